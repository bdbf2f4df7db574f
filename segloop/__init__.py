"""SegLoop core: loading, rendering, inference, editing, storage and training for 3D segmentation.

This package never imports Streamlit; the app's pages only arrange widgets and call it.
"""

__version__ = "0.1.0"
