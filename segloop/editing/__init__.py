"""Label editing as pure functions on numpy label maps: operations (paint, fill, grow, interpolate...),
undo/redo history that stores only changed voxels, and selections (box, lasso, click) turned into edits.

May import: `segloop.display` (planes: which voxels a screen slice shows), `segloop.io`, `segloop.errors`.
"""
