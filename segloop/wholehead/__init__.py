"""Localising anatomy in whole-head scans, and segmenting each side.

A whole-head T1 scan (skull, neck, any orientation and voxel size) is registered affinely to the
MNI152 2009 template (`registration`); boxes defined once in MNI millimetres (`regions`) are then
sampled from the scan as small crops like those the hippocampus model was trained on, and the
crops' probabilities are mapped back onto the scan grid. `qc` draws a registration's QC picture.

Everything here is pure functions on numpy arrays (no Streamlit). Modules in this package may import
numpy, scipy, SimpleITK, nibabel, Pillow and `segloop.io`, `segloop.data`, `segloop.display`,
`segloop.model` and `segloop.errors` only.
"""
