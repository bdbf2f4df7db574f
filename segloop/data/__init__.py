"""Where scans come from: data folders (MSD layout or plain folders, deep-link names), the offline demo
scans from the nilearn wheel, reproducible train/validation splits, and a seeded MR domain shift.

May import: `segloop.io`, `segloop.config`, `segloop.errors`.
"""
