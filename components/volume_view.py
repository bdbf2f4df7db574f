"""The volume view: the current scan in one to three planes, scrolled and edited in the browser.

`volume_view` mounts `volume_view.js` (a Streamlit components-v2 component hosting Plotly.js). The
scan and its labels go to the browser once per change, as packed voxel arrays
(`segloop.display.volume_payload`) served through Streamlit's media endpoint, the way `st.image`
serves its files; a rerun therefore sends only their URLs (a few hundred bytes), and the browser
keeps what it already holds. The slices shown first are also sent as PNGs, so the first image does
not wait for the volume.

What comes back:

- ``view`` (state, debounced while scrolling): the slice of each plane and the crosshair voxel;
  written into the case's remembered view (`session.case_view`), so every page opens where the
  user left the case.
- ``edit`` (trigger): an edit drawn on the slice the user saw, with that plane and slice index,
  handed to the page's ``on_edit``.
- ``command`` (trigger): keyboard shortcuts (undo, redo, tool, label), handed to ``on_command``.

A server-side move of the slices (a "go to" button, a deep link) goes through `move_to`, which
bumps the view's revision so the browser adopts it; otherwise the browser's own position stands.
"""

from __future__ import annotations

import functools
import hashlib
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import streamlit as st
from streamlit import config as st_config
from streamlit.runtime import Runtime

from components import session
from segloop.display import planes
from segloop.display.overlays import UNCERTAINTY_COLORS, box_outline
from segloop.display.render import DEFAULT_PALETTE, OverlayStyle, render_slice, png_data_uri
from segloop.display.volume_payload import PackedVolume, pack_labels, pack_scan, plane_geometry
from segloop.wholehead.regions import BOX_EDGES

_HERE = Path(__file__).parent
_COMPONENT = st.components.v2.component(
    "segloop_volume_view",
    html='<div class="segloop-vv"></div>',
    css=(_HERE / "volume_view.css").read_text(encoding="utf-8"),
    js=(_HERE / "volume_view.js").read_text(encoding="utf-8"),
    isolate_styles=False,  # Plotly.js styles its mode bar with rules in the page's <head>
)
#: Plotly.js's "basic" bundle (scatter, layout images, shapes, selections: all the view uses), 1.2 MB
#: instead of the full bundle's 4.8 MB, which took seconds to parse on a busy 2-core machine. Its
#: version follows the plotly.js inside the `plotly` package (tests/test_volume_view.py checks).
PLOTLY_JS = _HERE / "vendor" / "plotly-basic.min.js"

#: Keyboard shortcuts of the Segment page (key -> command), listed in its help popover.
SHORTCUTS = {
    "b": {"action": "tool", "tool": "box"},
    "l": {"action": "tool", "tool": "lasso"},
    "p": {"action": "tool", "tool": "brush"},
    "f": {"action": "tool", "tool": "flood fill"},
    "d": {"action": "tool", "tool": "delete component"},
    **{str(v): {"action": "label", "value": v} for v in range(10)},
}
SHORTCUT_HELP = (
    "**In a view** (pointer over it): mouse wheel or ↑/↓ — next/previous slice · PgUp/PgDn — 5 slices · "
    "Ctrl+wheel — zoom · drag — pan (or the active tool) · right-drag — window (across) and level (up/down) · "
    "double-click — reset zoom · "
    "click (or Shift+click with a tool) — move the other planes there (crosshair).\n\n"
    "**Editing**: Ctrl+Z — undo · Ctrl+Shift+Z or Ctrl+Y — redo · B box · L lasso · P brush · "
    "F flood fill · D delete component · 1–9 label · 0 eraser."
)

_PACKED_KEY = "_vv_packed"  # {"image": (marker, PackedVolume), "labels": ..., "extra": ...}
_FIRST_SENT_KEY = "_vv_first_sent"  # key -> image digest whose first-paint PNGs were sent


@functools.lru_cache(maxsize=1)
def _plotly_bytes() -> tuple[bytes, str]:
    """Plotly.js deflated (Streamlit's media endpoint sends bytes as they are) and a digest for its name."""
    raw = PLOTLY_JS.read_bytes()
    return zlib.compress(raw, 9), hashlib.blake2b(raw, digest_size=8).hexdigest()


def _serve(data: bytes, mimetype: str, name: str, coordinates: str) -> str:
    """URL of `data` on Streamlit's media endpoint, kept while this session's latest run refers to it.

    `name` is part of the file id: a content digest there makes ids unique even where Streamlit's
    own id only samples large files.
    """
    url = Runtime.instance().media_file_mgr.add(data, mimetype, coordinates, file_name=name)
    base = (st_config.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}{url}" if base and url.startswith("/") else url


def _packed(what: str, marker, make: Callable[[], PackedVolume]) -> PackedVolume:
    """`make()`, reused while `marker` (an identity of the array and its content) is unchanged.

    One cache per session, shared by the pages: the Viewer and the Segment page send the same bytes.
    """
    cache = st.session_state.setdefault(_PACKED_KEY, {})
    hit = cache.get(what)
    if hit is not None and hit[0] == marker:
        return hit[1]
    packed = make()
    cache[what] = (marker, packed)
    return packed


def _content_marker(array: np.ndarray) -> tuple:
    """Cheap change detector for an array edited in place: CRC-32 of its bytes (~5 ms for a whole head)."""
    a = np.ascontiguousarray(array)
    return id(array), a.shape, a.dtype.str, zlib.crc32(memoryview(a.reshape(-1)).cast("B"))


def _spec(key: str, what: str, packed: PackedVolume) -> dict:
    url = _serve(packed.data, "application/octet-stream", f"{packed.digest}.bin", f"segloop.{key}.{what}")
    return {"url": url, **packed.meta()}


def move_to(slices: dict[str, int] | None = None, voxel=None) -> None:
    """Move the current case's view from the server (a button, a deep link): the browser adopts it.

    Parameters
    ----------
    slices : dict of str to int, optional
        Slice index per plane.
    voxel : sequence of 3 int, optional
        A voxel (RAS i, j, k): every plane goes through it and the crosshair marks it.
    """
    view = session.case_view()
    vol = session.current_volume()
    if voxel is not None and vol is not None:
        v = [int(np.clip(round(float(c)), 0, n - 1)) for c, n in zip(voxel, vol.shape)]
        view["crosshair"] = v
        slices = {p: v[planes.PLANE_AXIS[p]] for p in planes.PLANES}
    for plane, index in (slices or {}).items():
        view["slices"][plane] = int(index)
    view["slices_rev"] = int(view.get("slices_rev", 0)) + 1


def _on_view(key: str, window_prefix: str) -> None:
    state = st.session_state.get(key) or {}
    view = state.get("view") if hasattr(state, "get") else None
    if not view or not _of_current_scan(view):
        return
    mine = session.case_view()
    window = view.get("window")
    if window and len(window) == 2 and all(isinstance(v, (int, float)) for v in window) and window[1] > 0:
        # a right-drag in the view: the page's window boxes follow (so does every page, via the case's view)
        center, width = float(f"{window[0]:.6g}"), float(f"{window[1]:.6g}")
        preset = st.session_state.get(f"{window_prefix}window_preset")
        st.session_state[f"{window_prefix}window_center"], st.session_state[f"{window_prefix}window_width"] = center, width
        mine["window"] = {"preset": preset, "center": center, "width": width}
    for plane, index in (view.get("slices") or {}).items():
        if plane in planes.PLANES and mine["slices"].get(plane) != int(index):
            mine["slices"][plane] = int(index)
            # the address bar names what the user looks at, so a shared link opens the same slice
            st.query_params["plane"], st.query_params["slice"] = plane, str(int(index))
    if view.get("crosshair") is not None:
        mine["crosshair"] = [int(c) for c in view["crosshair"]]


def _of_current_scan(event) -> bool:
    """Whether a browser event is about the scan now current (events name the scan they were made on)."""
    return event.get("scan") == session.current_key()


def _on_trigger(key: str, what: str, handler: Callable[[dict], None] | None) -> None:
    state = st.session_state.get(key) or {}
    event = state.get(what) if hasattr(state, "get") else None
    if not event or handler is None:
        return
    if not _of_current_scan(event):  # drawn on a scan the page has left: never applied to another one
        current = session.current()
        if current is not None and what == "edit":
            current.message = "That edit was drawn on another scan than the one now open, so it was not applied."
        return
    handler(dict(event))


def _first_images(key: str, image: PackedVolume, vol, labels, plane_names, window, style) -> dict:
    """PNGs of the slices about to be shown, once per scan and view: the first paint needs no volume."""
    sent = st.session_state.setdefault(_FIRST_SENT_KEY, {})
    if sent.get(key) == image.digest:
        return {}
    sent[key] = image.digest
    out = {}
    slices = session.case_view()["slices"]
    for plane in plane_names:
        index = int(slices.get(plane, planes.n_slices(vol.shape, plane) // 2))
        imgs = render_slice(vol.array, labels, plane, index, window[0], window[1], style)
        out[plane] = {"index": index, "grey": png_data_uri(imgs.grey_png),
                      "labels": png_data_uri(imgs.overlay_png) if imgs.overlay_png else ""}
    return out


def box_outlines(corners_by_side: list[np.ndarray], shape: tuple[int, int, int],
                 spacing: tuple[float, float, float]) -> dict:
    """Where boxes cut each slice, for the view: {plane: {"index": [[xs, ys], ...]}} in figure mm."""
    out: dict = {}
    for plane in planes.PLANES:
        per = {}
        for k in range(planes.n_slices(shape, plane)):
            cuts = [box_outline(c, BOX_EDGES, plane, k, shape, spacing) for c in corners_by_side]
            cuts = [[list(map(float, xs)), list(map(float, ys))] for xs, ys in (c for c in cuts if c is not None)]
            if cuts:
                per[str(k)] = cuts
        out[plane] = per
    return out


def volume_view(
    key: str,
    *,
    plane_names: tuple[str, ...] = planes.PLANES,
    window: tuple[float, float],
    style: OverlayStyle,
    names: dict[int, str],
    height: int = 380,
    editable: bool = False,
    tool: str = "pan",
    value: int = 1,
    brush: int = 3,
    levels: np.ndarray | None = None,
    outlines: dict | None = None,
    window_prefix: str = "",
    on_edit: Callable[[dict], None] | None = None,
    on_command: Callable[[dict], None] | None = None,
) -> None:
    """Show the current scan and labels in `plane_names`, side by side.

    Parameters
    ----------
    key : str
        Widget key (one per page).
    plane_names : tuple of str
        Planes to show, in order.
    window : (float, float)
        Display window (center, width) in the scan's units.
    style : OverlayStyle
        Label colours, hidden labels, opacity, contour mode, visibility.
    names : dict of int to str
        Label names for the pointer read-out.
    height : int
        Height of each view in screen pixels.
    editable : bool
        Whether edits and editing shortcuts are on (Segment page).
    tool : str
        Active tool (a `segloop.editing.tools.Tool` value) or "pan".
    value : int
        Label painted by the tools (0 erases).
    brush : int
        Brush radius in pixels.
    levels : np.ndarray of uint8, shape (X, Y, Z), optional
        Uncertainty heat levels 0..4 (`segloop.display.overlays.uncertainty_levels`).
    outlines : dict, optional
        `box_outlines` output.
    window_prefix : str
        Prefix of the page's window widgets (`components.slice_viewer.window_controls`): a window
        set by right-dragging in the view is written back into them.
    on_edit, on_command : callable, optional
        Called (before the page is drawn) with an edit or a command from the browser.
    """
    vol = session.current_volume()
    if vol is None:
        return
    labels = session.current_labels()
    scan = session.current_key()  # the scan's identity: two scans of one name never share a packed array
    image = _packed("image", (scan, id(vol)), lambda: pack_scan(vol.array))
    lab = None if labels is None else _packed("labels", (scan, *_content_marker(labels)), lambda: pack_labels(labels))
    extra = None if levels is None else _packed("extra", (scan, id(levels)), lambda: pack_labels(levels))
    view = session.case_view()
    slices = {p: int(np.clip(view["slices"].get(p, planes.n_slices(vol.shape, p) // 2), 0,
                             planes.n_slices(vol.shape, p) - 1)) for p in planes.PLANES}
    view["slices"].update(slices)
    data = {
        "scan": scan,
        "plotly_url": _serve(_plotly_bytes()[0], "application/octet-stream", f"plotly-{_plotly_bytes()[1]}.bin",
                             f"segloop.{key}.plotly"),
        "image": _spec(key, "image", image),
        "labels": None if lab is None else _spec(key, "labels", lab),
        "extra": None if extra is None else {**_spec(key, "extra", extra), "palette": [list(c) for c in UNCERTAINTY_COLORS]},
        "first": _first_images(key, image, vol, labels, plane_names, window, style),
        "geometry": {p: plane_geometry(vol.shape, p) for p in planes.PLANES},
        "pixel_mm": {p: list(planes.pixel_spacing(vol.spacing, p)) for p in planes.PLANES},
        "edges": {p: list(planes.EDGE_LABELS[p]) for p in planes.PLANES},
        "affine": np.asarray(vol.affine, float).tolist(),
        "window": [float(window[0]), float(window[1])],
        "style": {"visible": bool(style.visible), "opacity": float(style.opacity), "contour": bool(style.contour),
                  "colors": {str(k): v for k, v in style.colors}, "hidden": sorted(int(v) for v in style.hidden),
                  "palette": list(DEFAULT_PALETTE)},
        "names": {str(k): v for k, v in names.items()},
        "planes": list(plane_names),
        "height": int(height),
        "slices": slices,
        "slices_rev": int(view.get("slices_rev", 0)),
        "crosshair": view.get("crosshair"),
        "show_crosshair": True,
        "editable": bool(editable),
        "tool": str(tool),
        "value": int(value),
        "brush": int(brush),
        "shortcuts": SHORTCUTS if editable else {},
        "outlines": outlines or {},
    }
    _COMPONENT(
        key=key, data=data, default={"view": None},
        on_view_change=functools.partial(_on_view, key, window_prefix),
        on_edit_change=functools.partial(_on_trigger, key, "edit", on_edit),
        on_command_change=functools.partial(_on_trigger, key, "command", on_command),
    )
