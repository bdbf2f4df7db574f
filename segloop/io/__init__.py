"""Scans in and label maps out: readers (NIfTI, DICOM series, NRRD, MHA), the RAS `Volume`, writers
on the scan's own grid, atomic file writes and the scan facts a user checks first.

May import: `segloop.config`, `segloop.errors` and third-party libraries only.
"""
