"""What the viewer draws: planes (screen pixel <-> voxel), window/level, slice rendering to small PNGs
inside Plotly figures, overlays (uncertainty heat layer) and label volumes in mL.

May import: `segloop.io`, `segloop.config`, `segloop.errors`. Never Streamlit.
"""
