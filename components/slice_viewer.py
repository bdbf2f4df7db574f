"""Slice panels for the current scan: window/level and overlay controls, and one fragment per plane.

Each plane is an `st.fragment`, so moving its slider re-renders only that plane. Widget keys are
stable (`slice_<plane>`, `chart_<plane>`, `window_preset`, ...) so end-to-end tests can drive them.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from components import session
from segloop.display import planes
from segloop.display.render import OverlayStyle, build_slice_figure, label_color
from segloop.display.windowing import AUTO, PRESETS, preset_window

PLOT_CONFIG = {"scrollZoom": True, "displaylogo": False, "modeBarButtonsToRemove": ["toImage"]}


def _window_for(preset: str) -> tuple[float, float]:
    """Preset window of the current scan, computed once per (case, preset)."""
    vol = session.current_volume()
    cache = st.session_state.setdefault("_window_cache", {})
    key = (session.current_case(), id(vol), preset)
    if key not in cache:
        cache[key] = preset_window(preset, vol.array)
    return cache[key]


def _on_preset_change() -> None:
    center, width = _window_for(st.session_state["window_preset"])
    st.session_state["window_center"] = float(round(center, 4))
    st.session_state["window_width"] = float(round(width, 4))


def reset_for_new_scan(deep_link_plane: str | None = None, deep_link_slice: int | None = None) -> None:
    """Centre the sliders and auto-window when the current scan changes (deep-link slice honoured)."""
    vol = session.current_volume()
    marker = (session.current_case(), id(vol))
    if vol is None or st.session_state.get("_viewer_scan") == marker:
        return
    st.session_state["_viewer_scan"] = marker
    for plane in planes.PLANES:
        n = planes.n_slices(vol.shape, plane)
        idx = n // 2
        if plane == deep_link_plane and deep_link_slice is not None:
            idx = int(np.clip(deep_link_slice, 0, n - 1))
        st.session_state[f"slice_{plane}"] = idx
    st.session_state["window_preset"] = AUTO
    _on_preset_change()


def window_controls() -> tuple[float, float]:
    """Preset select + manual center/width; returns (center, width)."""
    st.selectbox("Window preset", list(PRESETS), key="window_preset", on_change=_on_preset_change)
    c1, c2 = st.columns(2)
    center = c1.number_input("Center", key="window_center", format="%.4g")
    width = c2.number_input("Width", key="window_width", min_value=1e-6, format="%.4g")
    return float(center), float(width)


def overlay_controls(labels: np.ndarray | None, names: dict[int, str]) -> OverlayStyle:
    """Show/opacity/filled-or-contour and per-label colour and visibility; returns the style."""
    visible = st.toggle("Show labels", value=True, key="overlay_show")
    opacity = st.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="overlay_opacity")
    mode = st.radio("Draw", ["Filled", "Contour"], horizontal=True, key="overlay_mode")
    values = sorted(set(names) | (set(np.flatnonzero(np.bincount(labels.ravel())).tolist()) if labels is not None else set()))
    colors, hidden = {}, set()
    for v in values:
        if v == 0:
            continue
        c1, c2 = st.columns([1, 3])
        colors[v] = c1.color_picker(
            names.get(v, f"label {v}"), label_color(v), key=f"label_color_{v}", label_visibility="collapsed"
        )
        if not c2.checkbox(f"{v}: {names.get(v, f'label {v}')}", value=True, key=f"label_visible_{v}"):
            hidden.add(v)
    return OverlayStyle.make(colors, hidden, opacity, contour=(mode == "Contour"), visible=visible)


def _sync_query_params(plane: str) -> None:
    """Slider callback: keep ?plane=&slice= in the URL pointing at what the user looks at."""
    index = st.session_state[f"slice_{plane}"]
    qp = st.query_params
    if qp.get("plane") != plane or qp.get("slice") != str(index):
        qp["plane"] = plane
        qp["slice"] = str(index)


@st.fragment
def slice_panel(
    plane: str,
    center: float,
    width: float,
    style: OverlayStyle,
    names: dict[int, str],
    height: int = 420,
    dragmode: str = "pan",
) -> None:
    """Slider `slice_<plane>` and chart `chart_<plane>` for one plane of the current scan."""
    vol = session.current_volume()
    if vol is None:
        return
    labels = session.current_labels()
    n = planes.n_slices(vol.shape, plane)
    index = st.slider(
        f"{plane.capitalize()} slice", 0, n - 1, key=f"slice_{plane}", on_change=_sync_query_params, args=(plane,)
    )
    fig = build_slice_figure(
        vol.array,
        labels,
        plane,
        int(index),
        spacing=vol.spacing,
        center=center,
        width=width,
        style=style,
        affine=vol.affine,
        label_names=names,
        dragmode=dragmode,
        height=height,
        uirevision=f"{session.current_case()}",
    )
    st.plotly_chart(fig, key=f"chart_{plane}", config=PLOT_CONFIG, theme=None)
