"""Fast slice rendering: a scan slice and its label overlay as small PNGs inside a Plotly figure.

Why: sending a float heatmap per slice costs ~4 bytes per pixel (plus base64) on every redraw and
makes sliders sluggish. Here the windowed grey slice is an 8-bit greyscale PNG and the label overlay
a palette PNG whose background is transparent (a few hundred bytes for typical masks); both go to
the browser as `go.Image(source="data:image/png;base64,...")` layers. The overlay's opacity is the
trace opacity, which gives the same pixels as blending on the server (`compose_rgb`).

Geometry: the figure's axes are on-screen millimetres: pixel (row, col) of a slice is centred at
x = col * col_mm, y = row * row_mm (`planes.pixel_spacing`), so anisotropic scans keep their
aspect; `figure_xy_to_pixel` converts a clicked or selected point back to (row, col), and
`planes.display_to_voxel` from there to a voxel.

Hover: for slices up to `hover_max_pixels` (64x64 by default, which covers typical hippocampus
crops) an invisible heatmap carries the exact intensity, voxel index (RAS i, j, k), world position
in mm and label name of every pixel. Larger slices would make that layer dominate the payload, so
their hover shows the in-plane position only; use `pixel_info` server-side for a clicked point.

Everything here is a pure function of (arrays, plane, index, display settings), so callers can
cache results.
"""

from __future__ import annotations

import base64
import io
import zlib
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from segloop import planes
from segloop.windowing import apply_window

#: Colours given to label values without an explicit colour (value 1 -> first entry...). Orange and
#: blue first: a pair colour-blind users can tell apart, and the shipped model card's own colours.
DEFAULT_PALETTE = (
    "#ff7f0e",  # orange
    "#1f9bff",  # blue
    "#34c759",  # green
    "#ffd60a",  # yellow
    "#bf5af2",  # purple
    "#64d2ff",  # cyan
    "#ff3b30",  # red
    "#ff375f",  # pink
    "#30d158",  # mint
    "#5e5ce6",  # indigo
)

#: zlib level 1 with the run-length strategy (zlib.Z_RLE): on brain slices it is both faster and
#: smaller than Pillow's default (level 6) or level 1 with the default strategy.
PNG_COMPRESS_LEVEL = 1
PNG_COMPRESS_TYPE = zlib.Z_RLE


def label_color(value: int, colors: dict[int, str] | None = None) -> str:
    """'#rrggbb' colour of a label value: the explicit one if given, else from DEFAULT_PALETTE."""
    if colors and int(value) in colors:
        return colors[int(value)]
    return DEFAULT_PALETTE[(int(value) - 1) % len(DEFAULT_PALETTE)]


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """'#rrggbb' -> (r, g, b)."""
    c = color.lstrip("#")
    if len(c) != 6:
        raise ValueError(f"colour {color!r} is not of the form #rrggbb")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


@dataclass(frozen=True)
class OverlayStyle:
    """How labels are drawn: colours, which values are hidden, opacity, filled or contour only.

    Frozen and hashable so it can be part of a cache key.
    """

    colors: tuple[tuple[int, str], ...] = ()
    hidden: frozenset[int] = field(default_factory=frozenset)
    opacity: float = 0.5
    contour: bool = False
    visible: bool = True

    @staticmethod
    def make(
        colors: dict[int, str] | None = None,
        hidden: set[int] | frozenset[int] | None = None,
        opacity: float = 0.5,
        contour: bool = False,
        visible: bool = True,
    ) -> "OverlayStyle":
        """Build from plain dict/set arguments."""
        return OverlayStyle(
            colors=tuple(sorted((int(k), str(v)) for k, v in (colors or {}).items())),
            hidden=frozenset(int(h) for h in (hidden or ())),
            opacity=float(opacity),
            contour=bool(contour),
            visible=bool(visible),
        )

    def color_of(self, value: int) -> str:
        return label_color(value, dict(self.colors))


def boundary_mask(labels2d: np.ndarray) -> np.ndarray:
    """True at labelled pixels whose value differs from one of their 4 neighbours (edges replicated)."""
    lab = np.asarray(labels2d)
    diff = np.zeros(lab.shape, dtype=bool)
    diff[1:, :] |= lab[1:, :] != lab[:-1, :]
    diff[:-1, :] |= lab[:-1, :] != lab[1:, :]
    diff[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    diff[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    return diff & (lab != 0)


def overlay_index_image(labels2d: np.ndarray, style: OverlayStyle) -> tuple[np.ndarray, list[int]]:
    """Palette-index image of the visible overlay: 0 = transparent, k = values[k-1].

    Returns (uint8 index image, values) so label maps with values above 255 still work as long as
    a slice holds fewer than 256 distinct labels.
    """
    lab = np.asarray(labels2d)
    if style.contour:
        lab = np.where(boundary_mask(lab), lab, 0)
    present = np.flatnonzero(np.bincount(lab.ravel())) if lab.dtype.kind in "ub" else np.unique(lab)
    values = [int(v) for v in present if v != 0 and int(v) not in style.hidden]
    if len(values) > 255:
        raise ValueError("more than 255 distinct labels in one slice")
    if not values:
        return np.zeros(lab.shape, dtype=np.uint8), []
    if lab.dtype == np.uint8 and values[-1] < 256:
        lut = np.zeros(256, dtype=np.uint8)
        lut[values] = np.arange(1, len(values) + 1, dtype=np.uint8)
        return lut[lab], values
    idx = np.zeros(lab.shape, dtype=np.uint8)
    for k, v in enumerate(values, start=1):
        idx[lab == v] = k
    return idx, values


def encode_png(
    array: np.ndarray,
    palette: list[tuple[int, int, int]] | None = None,
    compress_level: int = PNG_COMPRESS_LEVEL,
) -> bytes:
    """PNG bytes of a uint8 2D (grey, or palette indices when `palette` is given; index 0 transparent) or RGB array."""
    arr = np.ascontiguousarray(array, dtype=np.uint8)
    if palette is not None:
        img = Image.fromarray(arr).convert("P")  # keeps the index values; palette set below
        flat = [0, 0, 0]
        for rgb in palette:
            flat.extend(rgb)
        img.putpalette(flat)
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=compress_level, compress_type=PNG_COMPRESS_TYPE, transparency=0)
        return buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=compress_level, compress_type=PNG_COMPRESS_TYPE)
    return buf.getvalue()


def png_data_uri(png: bytes) -> str:
    """data: URI of PNG bytes, for `go.Image(source=...)`."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@dataclass(frozen=True)
class SliceImages:
    """One rendered slice: the grey PNG, the overlay PNG (None when nothing is drawn), and its size."""

    grey_png: bytes
    overlay_png: bytes | None
    rows: int
    cols: int
    label_values: tuple[int, ...]


def render_slice(
    image: np.ndarray,
    labels: np.ndarray | None,
    plane: str,
    index: int,
    center: float,
    width: float,
    style: OverlayStyle = OverlayStyle(),
) -> SliceImages:
    """Window slice `index` of `image` in `plane` to an 8-bit PNG and its labels to an overlay PNG."""
    grey = apply_window(planes.slice_view(image, plane, index), center, width)
    overlay_png = None
    values: list[int] = []
    if labels is not None and style.visible:
        idx, values = overlay_index_image(planes.slice_view(labels, plane, index), style)
        if values:
            overlay_png = encode_png(idx, palette=[hex_to_rgb(style.color_of(v)) for v in values])
    return SliceImages(encode_png(grey), overlay_png, grey.shape[0], grey.shape[1], tuple(values))


def compose_rgb(grey: np.ndarray, labels2d: np.ndarray | None, style: OverlayStyle = OverlayStyle()) -> np.ndarray:
    """Server-side blend of a uint8 grey slice and its labels: what the browser shows, as (rows, cols, 3) uint8."""
    rgb = np.repeat(np.asarray(grey, dtype=np.uint8)[..., None], 3, axis=-1)
    if labels2d is None or not style.visible:
        return rgb
    idx, values = overlay_index_image(labels2d, style)
    if not values:
        return rgb
    colours = np.array([(0, 0, 0)] + [hex_to_rgb(style.color_of(v)) for v in values], dtype=np.float32)
    mask = idx > 0
    a = float(style.opacity)
    blended = (1.0 - a) * rgb[mask].astype(np.float32) + a * colours[idx[mask]]
    rgb[mask] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return rgb


def figure_xy_to_pixel(x: float, y: float, plane: str, spacing: tuple[float, float, float]) -> tuple[int, int]:
    """(row, col) of the slice pixel under figure coordinates (x, y) in on-screen mm."""
    row_mm, col_mm = planes.pixel_spacing(spacing, plane)
    return int(round(y / row_mm)), int(round(x / col_mm))


def pixel_info(
    image: np.ndarray,
    labels: np.ndarray | None,
    affine: np.ndarray,
    plane: str,
    index: int,
    row: int,
    col: int,
    label_names: dict[int, str] | None = None,
) -> dict:
    """Voxel index, world position (mm), intensity and label name under a slice pixel."""
    i, j, k = planes.display_to_voxel(plane, index, row, col, image.shape)
    xyz = np.asarray(affine, dtype=float) @ np.array([i, j, k, 1.0])
    value = int(labels[i, j, k]) if labels is not None else 0
    return {
        "voxel": (int(i), int(j), int(k)),
        "mm": tuple(round(float(c), 2) for c in xyz[:3]),
        "intensity": float(image[i, j, k]),
        "label": value,
        "label_name": (label_names or {}).get(value, str(value) if value else "background"),
    }


def _edge_annotations(plane: str, color: str = "#ffd60a") -> list[dict]:
    left, right, top, bottom = planes.EDGE_LABELS[plane]
    common = dict(
        xref="x domain", yref="y domain", showarrow=False, bgcolor="rgba(0,0,0,0.55)", borderpad=1,
        font=dict(color=color, size=14, weight="bold"),
    )
    return [
        dict(text=left, x=0.01, y=0.5, xanchor="left", yanchor="middle", **common),
        dict(text=right, x=0.99, y=0.5, xanchor="right", yanchor="middle", **common),
        dict(text=top, x=0.5, y=0.99, xanchor="center", yanchor="top", **common),
        dict(text=bottom, x=0.5, y=0.01, xanchor="center", yanchor="bottom", **common),
    ]


def _hover_trace(
    image: np.ndarray,
    labels: np.ndarray | None,
    affine: np.ndarray,
    plane: str,
    index: int,
    row_mm: float,
    col_mm: float,
    label_names: dict[int, str] | None,
) -> dict:
    """Invisible per-pixel heatmap carrying intensity, voxel index, mm and label name for hover."""
    sl = planes.slice_view(image, plane, index)
    rows, cols = sl.shape
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    parts = planes.display_to_voxel(plane, index, rr, cc, image.shape)  # type: ignore[arg-type]
    ijk = np.stack(np.broadcast_arrays(*parts), axis=-1).astype(np.float32)
    world = ijk @ np.asarray(affine, dtype=np.float32)[:3, :3].T + np.asarray(affine, dtype=np.float32)[:3, 3]
    custom = np.concatenate([ijk, world.astype(np.float32)], axis=-1)
    text = None
    names = label_names or {}
    if labels is not None:
        lab = planes.slice_view(labels, plane, index)
        lut = {int(v): names.get(int(v), f"label {int(v)}") for v in np.unique(lab) if v != 0}
        lut[0] = ""
        text = [[lut[int(v)] for v in row] for row in lab.tolist()]
    return dict(
        type="heatmap",
        z=np.ascontiguousarray(sl, dtype=np.float32),
        x=(np.arange(cols) * col_mm).astype(np.float32),
        y=(np.arange(rows) * row_mm).astype(np.float32),
        customdata=custom,
        text=text,
        opacity=0,
        showscale=False,
        colorscale=[[0, "rgba(0,0,0,0)"], [1, "rgba(0,0,0,0)"]],
        hovertemplate=(
            "voxel (%{customdata[0]:.0f}, %{customdata[1]:.0f}, %{customdata[2]:.0f})<br>"
            "%{customdata[3]:.1f}, %{customdata[4]:.1f}, %{customdata[5]:.1f} mm<br>"
            "intensity %{z:.5~g}<br>%{text}<extra></extra>"
        ),
        name="hover",
    )


def slice_figure_dict(
    image: np.ndarray,
    labels: np.ndarray | None,
    plane: str,
    index: int,
    *,
    spacing: tuple[float, float, float],
    center: float,
    width: float,
    style: OverlayStyle = OverlayStyle(),
    affine: np.ndarray | None = None,
    label_names: dict[int, str] | None = None,
    dragmode: str = "pan",
    selectable: bool = False,
    hover_max_pixels: int = 64 * 64,
    height: int | None = None,
    uirevision: str = "",
    title: str | None = None,
) -> dict:
    """The slice figure as a plain Plotly dict (what `build_slice_figure` wraps); see there."""
    row_mm, col_mm = planes.pixel_spacing(spacing, plane)
    imgs = render_slice(image, labels, plane, index, center, width, style)
    rows, cols = imgs.rows, imgs.cols
    small = rows * cols <= hover_max_pixels
    geometry = dict(x0=0, y0=0, dx=col_mm, dy=row_mm)
    scan = dict(type="image", source=png_data_uri(imgs.grey_png), name="scan", **geometry)
    if small:
        scan["hoverinfo"] = "skip"
    else:
        scan["hovertemplate"] = "%{x:.1f}, %{y:.1f} mm from top left<extra></extra>"
    data: list = [scan]
    if imgs.overlay_png is not None:
        data.append(
            dict(
                type="image",
                source=png_data_uri(imgs.overlay_png),
                opacity=style.opacity,
                name="labels",
                hoverinfo="skip",
                **geometry,
            )
        )
    if small:
        aff = affine if affine is not None else np.diag([*spacing, 1.0])
        data.append(_hover_trace(image, labels, aff, plane, index, row_mm, col_mm, label_names))
    if selectable:
        rr, cc = np.meshgrid(np.arange(rows, dtype=np.float32), np.arange(cols, dtype=np.float32), indexing="ij")
        data.append(
            dict(
                type="scattergl",
                x=(cc.ravel() * np.float32(col_mm)).astype(np.float32),
                y=(rr.ravel() * np.float32(row_mm)).astype(np.float32),
                mode="markers",
                marker=dict(size=2, opacity=0),
                hoverinfo="none",
                showlegend=False,
                name="pixels",
            )
        )
    axis = dict(showgrid=False, zeroline=False, showticklabels=False, ticks="", showline=False)
    layout = dict(
        margin=dict(l=0, r=0, t=28 if title else 0, b=0),
        dragmode=dragmode,
        uirevision=f"{uirevision}|{plane}|{rows}x{cols}",
        annotations=_edge_annotations(plane),
        xaxis=dict(range=[-col_mm / 2, (cols - 0.5) * col_mm], constrain="domain", **axis),
        yaxis=dict(
            range=[(rows - 0.5) * row_mm, -row_mm / 2],
            scaleanchor="x",
            scaleratio=1,
            constrain="domain",
            **axis,
        ),
        plot_bgcolor="black",
        paper_bgcolor="rgba(0,0,0,0)",
        showlegend=False,
        hoverlabel=dict(bgcolor="rgba(20,20,20,0.85)", font=dict(color="white", size=12)),
        # An explicit empty template: Plotly's default one is ~2000 nodes copied and serialised per
        # figure (a third of the build time); Streamlit applies its own theme anyway.
        template=dict(layout=dict()),
    )
    if height is not None:
        layout["height"] = int(height)
    if title:
        layout["title"] = dict(text=title, x=0.01, y=0.99, font=dict(size=13))
    return {"data": data, "layout": layout}


def build_slice_figure(image: np.ndarray, labels: np.ndarray | None, plane: str, index: int, **kwargs) -> go.Figure:
    """A Plotly figure of one slice with its overlay, direction labels, hover and optional selection layer.

    Keyword arguments as `slice_figure_dict`: spacing, center, width (required); style, affine,
    label_names, dragmode ("pan", "zoom", "select", "lasso"), selectable, hover_max_pixels, height,
    uirevision, title. `uirevision` (plus plane and slice shape) keeps zoom/pan across slice changes
    of one scan. `selectable=True` adds an invisible WebGL point per pixel so box/lasso selections
    report pixels (x/y -> `figure_xy_to_pixel`); leave it off for viewing, it grows the payload.

    The figure is built without Plotly's per-property validation, which costs ~50 ms per slice;
    tests check once that the dict is valid (`go.Figure(slice_figure_dict(...))`).
    """
    return go.Figure(slice_figure_dict(image, labels, plane, index, **kwargs), _validate=False)
