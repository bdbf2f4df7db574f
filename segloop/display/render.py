"""Fast slice rendering: a scan slice and its label overlay as small PNGs inside a Plotly figure.

Why: sending a float heatmap per slice costs ~4 bytes per pixel (plus base64) on every redraw and
makes sliders sluggish. Here the windowed grey slice is an 8-bit greyscale PNG and the label overlay
a palette PNG whose background is transparent (a few hundred bytes for typical masks); both go to
the browser as `go.Image(source="data:image/png;base64,...")` layers, the overlay's opacity being the
trace opacity. The volume view sends these PNGs for the slices it shows first (`render_slice`).

Geometry: the figure's axes are on-screen millimetres: pixel (row, col) of a slice is centred at
x = col * col_mm, y = row * row_mm (`planes.pixel_spacing`), so anisotropic scans keep their
aspect; `figure_xy_to_pixel` converts a clicked or selected point back to (row, col), and
`planes.display_to_voxel` from there to a voxel.

Hover: for slices up to `hover_max_pixels` (64x64 by default, which covers typical hippocampus
crops) an invisible heatmap carries the exact intensity, voxel index (RAS i, j, k), world position
in mm and label name of every pixel. Larger slices would make that layer dominate the payload, so
their hover shows the in-plane position only.

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

from segloop.display import planes
from segloop.display.windowing import apply_window

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
    """Return the '#rrggbb' colour of a label value: the explicit one if given, else from `DEFAULT_PALETTE`.

    Parameters
    ----------
    value : int
        Label value (1 and up; 0 is background and is never drawn).
    colors : dict of int to str, optional
        Explicit '#rrggbb' colours per label value, e.g. from a model card.

    Returns
    -------
    str
        ``colors[value]`` when present, else ``DEFAULT_PALETTE[(value - 1) % len(DEFAULT_PALETTE)]``
        (value 1 gets the first entry, and the palette repeats every 10 values).

    Examples
    --------
    >>> label_color(1), label_color(11), label_color(3, {3: "#000000"})
    ('#ff7f0e', '#ff7f0e', '#000000')
    """
    if colors and int(value) in colors:
        return colors[int(value)]
    return DEFAULT_PALETTE[(int(value) - 1) % len(DEFAULT_PALETTE)]


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """Convert a '#rrggbb' colour (the '#' is optional) to an (r, g, b) tuple.

    Parameters
    ----------
    color : str
        Six hexadecimal digits, optionally preceded by '#'.

    Returns
    -------
    tuple of 3 int
        Red, green and blue in 0..255.

    Raises
    ------
    ValueError
        When the colour does not have six digits after the '#', or a digit is not hexadecimal.

    Examples
    --------
    >>> hex_to_rgb("#ff7f0e")
    (255, 127, 14)
    """
    c = color.lstrip("#")
    if len(c) != 6:
        raise ValueError(f"colour {color!r} is not of the form #rrggbb")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


@dataclass(frozen=True)
class OverlayStyle:
    """How labels are drawn: colours, which values are hidden, opacity, filled or contour only.

    Frozen and hashable so it can be part of a cache key; build one from a dict and a set with
    `OverlayStyle.make`.

    Parameters
    ----------
    colors : tuple of (int, str) pairs, optional
        Explicit '#rrggbb' colour per label value, sorted by value; other values use `label_color`.
    hidden : frozenset of int, optional
        Label values not drawn.
    opacity : float, optional
        Opacity of the label overlay in [0, 1] (0.5 by default).
    contour : bool, optional
        Draw only the boundary pixels of each label (see `boundary_mask`) instead of filled regions.
    visible : bool, optional
        False hides the whole overlay.
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
        """Build a style from plain dict/set arguments (normalised, so equal styles hash equal).

        Parameters
        ----------
        colors : dict of int to str, optional
            Explicit '#rrggbb' colour per label value.
        hidden : set of int, optional
            Label values not drawn.
        opacity : float, optional
            Overlay opacity in [0, 1].
        contour : bool, optional
            Draw label boundaries only.
        visible : bool, optional
            False hides the overlay.

        Returns
        -------
        OverlayStyle

        Examples
        --------
        >>> OverlayStyle.make({2: "#00ff00"}, {3}, opacity=0.7)
        OverlayStyle(colors=((2, '#00ff00'),), hidden=frozenset({3}), opacity=0.7, contour=False, visible=True)
        """
        return OverlayStyle(
            colors=tuple(sorted((int(k), str(v)) for k, v in (colors or {}).items())),
            hidden=frozenset(int(h) for h in (hidden or ())),
            opacity=float(opacity),
            contour=bool(contour),
            visible=bool(visible),
        )

    def color_of(self, value: int) -> str:
        """Return the '#rrggbb' colour this style gives a label value.

        Parameters
        ----------
        value : int
            Label value.

        Returns
        -------
        str
            The style's explicit colour for `value`, else the `DEFAULT_PALETTE` one (see `label_color`).
        """
        return label_color(value, dict(self.colors))


def boundary_mask(labels2d: np.ndarray) -> np.ndarray:
    """Mark the boundary pixels of every label in a 2D label slice (for contour-only overlays).

    A pixel is on a boundary when it is labelled (non-zero) and one of its 4 neighbours holds a
    different value. Beyond the image edge the edge pixel is replicated, so a label touching the
    edge gets no boundary there.

    Parameters
    ----------
    labels2d : np.ndarray of int, shape (rows, cols)
        Label slice.

    Returns
    -------
    np.ndarray of bool, shape (rows, cols)
        True on boundary pixels.

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.zeros((4, 4), np.uint8)
    >>> lab[1:, 1:] = 1
    >>> boundary_mask(lab).astype(int)
    array([[0, 0, 0, 0],
           [0, 1, 1, 1],
           [0, 1, 0, 0],
           [0, 1, 0, 0]])
    """
    lab = np.asarray(labels2d)
    diff = np.zeros(lab.shape, dtype=bool)
    diff[1:, :] |= lab[1:, :] != lab[:-1, :]
    diff[:-1, :] |= lab[:-1, :] != lab[1:, :]
    diff[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    diff[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    return diff & (lab != 0)


def overlay_index_image(labels2d: np.ndarray, style: OverlayStyle) -> tuple[np.ndarray, list[int]]:
    """Map a label slice to a palette-index image of the visible overlay: 0 = transparent, k = values[k-1].

    Indices rather than label values go into the PNG, so label maps with values above 255 still
    work as long as a slice holds fewer than 256 distinct visible labels.

    Parameters
    ----------
    labels2d : np.ndarray of int, shape (rows, cols)
        Label slice (uint8 takes a lookup-table fast path).
    style : OverlayStyle
        Hidden values are left out; with ``style.contour`` only boundary pixels are kept.

    Returns
    -------
    index : np.ndarray of uint8, shape (rows, cols)
        0 where nothing is drawn, k where the pixel shows ``values[k - 1]``.
    values : list of int
        The visible non-zero label values in the slice, ascending; empty when nothing is drawn.

    Raises
    ------
    ValueError
        When more than 255 distinct visible labels are in the slice.

    Examples
    --------
    >>> import numpy as np
    >>> index, values = overlay_index_image(np.array([[0, 3], [7, 3]], np.uint8), OverlayStyle())
    >>> index.tolist(), values
    ([[0, 1], [2, 1]], [3, 7])
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
    """Encode a uint8 image as PNG bytes: greyscale, RGB, or palette indices with index 0 transparent.

    Compression is zlib level 1 with the run-length strategy (see `PNG_COMPRESS_TYPE`), faster and
    smaller than Pillow's default on brain slices.

    Parameters
    ----------
    array : np.ndarray, shape (rows, cols) or (rows, cols, 3)
        Pixel values in 0..255; converted to uint8 with numpy casting (no clipping), so values
        outside that range wrap. A (rows, cols, 3) array is RGB and needs ``palette=None``.
    palette : list of (int, int, int), optional
        When given, `array` holds palette indices: index k > 0 is drawn in ``palette[k - 1]`` and
        index 0 is fully transparent.
    compress_level : int, optional
        zlib level 0..9.

    Returns
    -------
    bytes
        A complete PNG file: 8-bit greyscale ("L"), RGB, or palette ("P") with a transparency entry.
    """
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
    """Wrap PNG bytes in a base64 ``data:`` URI, for `go.Image(source=...)`.

    Parameters
    ----------
    png : bytes
        A PNG file.

    Returns
    -------
    str
        ``"data:image/png;base64,..."``.

    Examples
    --------
    >>> png_data_uri(b"abc")
    'data:image/png;base64,YWJj'
    """
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@dataclass(frozen=True)
class SliceImages:
    """One rendered slice: the grey PNG, the overlay PNG (None when nothing is drawn), and its size.

    Parameters
    ----------
    grey_png : bytes
        8-bit greyscale PNG of the windowed scan slice.
    overlay_png : bytes or None
        Palette PNG of the visible labels (transparent background); None when no label is drawn.
    rows, cols : int
        Slice size in pixels, as `segloop.display.planes.slice_shape`.
    label_values : tuple of int
        The label values drawn in the overlay, ascending; palette index k shows ``label_values[k - 1]``.
    """

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
    """Render slice `index` of a scan to an 8-bit grey PNG and its labels to a palette overlay PNG.

    Parameters
    ----------
    image : np.ndarray of float, shape (X, Y, Z), RAS voxel order
        Scan intensities in the scan's own units.
    labels : np.ndarray of uint8, shape (X, Y, Z), RAS voxel order, or None
        Label map on the same grid; None for no overlay.
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane.
    index : int
        Slice index along the plane's RAS axis.
    center, width : float
        Display window in the scan's units (see `segloop.display.windowing.apply_window`).
    style : OverlayStyle, optional
        How labels are drawn; with ``style.visible=False`` no overlay is made.

    Returns
    -------
    SliceImages
        The PNGs, the slice size and the label values drawn.

    Raises
    ------
    ValueError
        When `plane` is unknown, or a slice holds more than 255 distinct visible labels.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    >>> labels = np.zeros((2, 3, 4), np.uint8)
    >>> labels[0, 0, 0], labels[1, 1, 0] = 2, 5
    >>> out = render_slice(image, labels, "axial", 0, center=10.0, width=20.0)
    >>> out.rows, out.cols, out.label_values, out.grey_png[:4]
    (3, 2, (2, 5), b'\\x89PNG')
    """
    grey = apply_window(planes.slice_view(image, plane, index), center, width)
    overlay_png = None
    values: list[int] = []
    if labels is not None and style.visible:
        idx, values = overlay_index_image(planes.slice_view(labels, plane, index), style)
        if values:
            overlay_png = encode_png(idx, palette=[hex_to_rgb(style.color_of(v)) for v in values])
    return SliceImages(encode_png(grey), overlay_png, grey.shape[0], grey.shape[1], tuple(values))


def figure_xy_to_pixel(x: float, y: float, plane: str, spacing: tuple[float, float, float]) -> tuple[int, int]:
    """Convert figure coordinates (on-screen mm) of a click or selection to the slice pixel under them.

    Parameters
    ----------
    x, y : float
        Figure coordinates in mm from the centre of the top-left pixel (x to the right, y down).
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane.
    spacing : tuple of 3 float
        Voxel size in mm along the RAS axes.

    Returns
    -------
    tuple of 2 int
        (row, col) of the nearest pixel centre (Python `round`, halves to even). Not clipped: the
        caller checks that it lies inside the slice.

    Raises
    ------
    ValueError
        When `plane` is not one of the three planes.

    Examples
    --------
    >>> figure_xy_to_pixel(3.0, 4.0, "axial", (1.5, 2.0, 1.0))  # axial pixels: 2.0 mm tall, 1.5 mm wide
    (2, 2)
    """
    row_mm, col_mm = planes.pixel_spacing(spacing, plane)
    return int(round(y / row_mm)), int(round(x / col_mm))


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
    """Build the slice figure as a plain Plotly dict (what `build_slice_figure` wraps); see there for why.

    Parameters
    ----------
    image : np.ndarray of float, shape (X, Y, Z), RAS voxel order
        Scan intensities.
    labels : np.ndarray of uint8, shape (X, Y, Z), or None
        Label map on the same grid; None for no overlay.
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane.
    index : int
        Slice index along the plane's RAS axis.
    spacing : tuple of 3 float
        Voxel size in mm along the RAS axes; the figure's axes are on-screen mm.
    center, width : float
        Display window in the scan's units.
    style : OverlayStyle, optional
        How labels are drawn.
    affine : np.ndarray of float, shape (4, 4), optional
        RAS voxel -> world mm, for the hover's world positions; ``diag(spacing)`` (origin at voxel
        0) when None.
    label_names : dict of int to str, optional
        Names shown on hover; "label <value>" otherwise.
    dragmode : str, optional
        Plotly drag mode: "pan", "zoom", "select" or "lasso".
    selectable : bool, optional
        Add an invisible WebGL point per pixel so box/lasso selections report pixels.
    hover_max_pixels : int, optional
        Largest slice (rows x cols) that gets the per-pixel hover layer.
    height : int, optional
        Figure height in screen pixels; Plotly's default when None.
    uirevision : str, optional
        Keeps zoom/pan across redraws with the same value, plane and slice shape.
    title : str, optional
        Title drawn at the top left.

    Returns
    -------
    dict
        ``{"data": [...], "layout": {...}}``: the scan image trace, the label image trace (when any
        label is drawn), the hover heatmap (small slices) and the selection points (`selectable`).

    Raises
    ------
    ValueError
        When `plane` is unknown, or a slice holds more than 255 distinct visible labels.
    """
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
    """Build a Plotly figure of one slice with its overlay, direction labels, hover and optional selection layer.

    Keyword arguments as `slice_figure_dict`: spacing, center, width (required); style, affine,
    label_names, dragmode ("pan", "zoom", "select", "lasso"), selectable, hover_max_pixels, height,
    uirevision, title. `uirevision` (plus plane and slice shape) keeps zoom/pan across slice changes
    of one scan. `selectable=True` adds an invisible WebGL point per pixel so box/lasso selections
    report pixels (x/y -> `figure_xy_to_pixel`); leave it off for viewing, it grows the payload.

    The figure is built without Plotly's per-property validation, which costs ~50 ms per slice;
    tests check once that the dict is valid (`go.Figure(slice_figure_dict(...))`).

    Parameters
    ----------
    image : np.ndarray of float, shape (X, Y, Z), RAS voxel order
        Scan intensities.
    labels : np.ndarray of uint8, shape (X, Y, Z), or None
        Label map on the same grid; None for no overlay.
    plane : {"axial", "coronal", "sagittal"}
        Viewing plane.
    index : int
        Slice index along the plane's RAS axis.
    **kwargs
        Passed to `slice_figure_dict`.

    Returns
    -------
    plotly.graph_objects.Figure

    Raises
    ------
    ValueError
        As `slice_figure_dict`.
    TypeError
        When a required keyword (spacing, center, width) is missing.
    """
    return go.Figure(slice_figure_dict(image, labels, plane, index, **kwargs), _validate=False)
