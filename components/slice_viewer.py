"""Display controls for the current scan: window/level and label overlay settings, and the case's view.

The slices themselves are drawn by the volume view (`components.volume_view`), in the browser.
What the user looks at is kept per case (`session.case_view`), not in widgets: Streamlit drops a
widget's value when its page is left, so `restore_view` puts the case's window back into a page's
widgets (keys `window_*` on the Viewer, `seg_window_*` on the Segment page) before they are drawn,
and a deep link's plane and slice into the case's view. Both pages therefore open a case where the
user left it. A window is never degenerate: `sane_window` falls back to the scan's automatic window
when a width is not positive, vanishingly small for the scan, or when the window misses the scan's
intensities altogether.
"""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from components import session
from components.volume_view import move_to
from segloop.display import planes
from segloop.display.render import OverlayStyle, label_color
from segloop.display.windowing import AUTO, FULL, PRESETS, preset_window

PLOT_CONFIG = {"scrollZoom": True, "displaylogo": False, "modeBarButtonsToRemove": ["toImage"]}
#: A window narrower than this fraction of the automatic window is treated as a mistake (white planes).
MIN_WIDTH_FRACTION = 1e-3
MIN_WIDTH_INPUT = 1e-6  # the Width box's own minimum
_VIEW_OWNER_KEY = "_view_owner"  # (page prefix, scan's content id) whose widgets hold the view now
_WINDOW_NOTE_KEY = "_window_note"


def _window_for(preset: str) -> tuple[float, float]:
    """Preset window of the current scan, computed once per scan and preset."""
    state = session.current()
    if preset not in state.windows:
        state.windows[preset] = preset_window(preset, session.current_volume().array)
    return state.windows[preset]


def sane_window(center: float, width: float, auto: tuple[float, float],
                full: tuple[float, float] | None = None) -> tuple[float, float]:
    """(center, width) when it shows something, else the automatic window `auto`.

    A window is degenerate when a value is not finite, the width is not positive or is under
    `MIN_WIDTH_FRACTION` of the automatic window's width, or (given the scan's `full` range window)
    the window lies entirely outside the scan's intensities.
    """
    try:
        c, w = float(center), float(width)
    except (TypeError, ValueError):
        return auto
    if not (math.isfinite(c) and math.isfinite(w)) or w <= 0 or w < MIN_WIDTH_FRACTION * auto[1]:
        return auto
    if full is not None:
        lo, hi = full[0] - full[1] / 2, full[0] + full[1] / 2
        if c + w / 2 < lo or c - w / 2 > hi:
            return auto
    return c, w


def _keys(prefix: str) -> tuple[str, str, str]:
    return f"{prefix}window_preset", f"{prefix}window_center", f"{prefix}window_width"


def _set_window(prefix: str, preset: str, center: float, width: float) -> None:
    """Put a window into a page's widgets (before they are drawn, or from a callback) and the case's view."""
    kp, kc, kw = _keys(prefix)
    center, width = float(f"{center:.6g}"), max(float(f"{width:.6g}"), MIN_WIDTH_INPUT)
    st.session_state[kp], st.session_state[kc], st.session_state[kw] = preset, center, width
    session.case_view()["window"] = {"preset": preset, "center": center, "width": width}


def _on_preset_change(prefix: str = "") -> None:
    preset = st.session_state[_keys(prefix)[0]]
    _set_window(prefix, preset, *_window_for(preset))


def _on_window_edit(prefix: str = "") -> None:
    """Center/width typed in: keep them unless they make a degenerate window (then the automatic one)."""
    kp, kc, kw = _keys(prefix)
    center, width = st.session_state.get(kc), st.session_state.get(kw)
    good = sane_window(center, width, _window_for(AUTO), _window_for(FULL))
    if good != (center, width):
        st.session_state[_WINDOW_NOTE_KEY] = (f"A window of width {width:.4g} around {center:.4g} shows nothing of "
                                              "this scan: back to the automatic window.")
        _set_window(prefix, AUTO, *good)
    else:
        session.case_view()["window"] = {"preset": st.session_state.get(kp, AUTO), "center": center, "width": width}


def restore_view(prefix: str = "", deep_link_plane: str | None = None, deep_link_slice: int | None = None) -> None:
    """Before a page draws its window widgets: give them the current case's remembered window.

    The first run of a page for a case (after another page, or another case) takes the window the
    case was left with (the automatic window the first time); later runs of the same page keep what
    the widgets say. A deep link's plane and slice move the case's view on the first run.
    """
    vol = session.current_volume()
    if vol is None:
        return
    owner = (prefix, session.current_key())
    fresh = st.session_state.get(_VIEW_OWNER_KEY) != owner
    st.session_state[_VIEW_OWNER_KEY] = owner
    view = session.case_view()
    if deep_link_plane in planes.PLANES and deep_link_slice is not None and fresh:
        n = planes.n_slices(vol.shape, deep_link_plane)
        move_to({deep_link_plane: int(np.clip(int(deep_link_slice), 0, n - 1))})

    kp, kc, kw = _keys(prefix)
    saved = view.get("window") or {}
    if not fresh and all(k in st.session_state for k in (kp, kc, kw)):
        preset, center, width = st.session_state[kp], st.session_state[kc], st.session_state[kw]
    elif saved:
        preset, center, width = saved["preset"], saved["center"], saved["width"]
    else:
        preset, (center, width) = AUTO, _window_for(AUTO)
    if preset not in PRESETS:
        preset = AUTO
    good = sane_window(center, width, _window_for(AUTO), _window_for(FULL))
    if good != (center, width):
        preset = AUTO
    _set_window(prefix, preset, *good)


def window_controls(prefix: str = "") -> tuple[float, float]:
    """Preset select + manual center/width (keys `<prefix>window_*`); returns a sane (center, width)."""
    kp, kc, kw = _keys(prefix)
    st.selectbox("Window preset", list(PRESETS), key=kp, on_change=_on_preset_change, args=(prefix,))
    c1, c2 = st.columns(2)
    center = c1.number_input("Center", key=kc, format="%.4g", on_change=_on_window_edit, args=(prefix,))
    width = c2.number_input("Width", key=kw, min_value=MIN_WIDTH_INPUT, format="%.4g", on_change=_on_window_edit, args=(prefix,))
    note = st.session_state.pop(_WINDOW_NOTE_KEY, None)
    if note:
        st.caption(note)
    center, width = sane_window(center, width, _window_for(AUTO), _window_for(FULL))
    session.case_view()["window"] = {"preset": st.session_state.get(kp, AUTO), "center": center, "width": width}
    return center, width


def overlay_controls(labels: np.ndarray | None, names: dict[int, str]) -> OverlayStyle:
    """Show/opacity/filled-or-contour and per-label colour and visibility; returns the style."""
    visible = st.toggle("Show labels", value=True, key="overlay_show", persist_state="session")
    opacity = st.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="overlay_opacity", persist_state="session")
    mode = st.radio("Draw", ["Filled", "Contour"], horizontal=True, key="overlay_mode", persist_state="session")
    values = sorted(set(names) | (set(np.flatnonzero(np.bincount(labels.ravel())).tolist()) if labels is not None else set()))
    colors, hidden = {}, set()
    for v in values:
        if v == 0:
            continue
        c1, c2 = st.columns([1, 3])
        colors[v] = c1.color_picker(
            names.get(v, f"label {v}"), label_color(v), key=f"label_color_{v}", label_visibility="collapsed",
            persist_state="session",
        )
        if not c2.checkbox(f"{v}: {names.get(v, f'label {v}')}", value=True, key=f"label_visible_{v}",
                           persist_state="session"):
            hidden.add(v)
    return OverlayStyle.make(colors, hidden, opacity, contour=(mode == "Contour"), visible=visible)
