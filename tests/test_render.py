"""Slice rendering: orientation, overlay pixels, contours, aspect ratio, PNG content, payload size."""

from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from segloop.display import planes
from segloop.display.label_volumes import label_volumes_ml
from segloop.display.render import (
    OverlayStyle,
    boundary_mask,
    build_slice_figure,
    figure_xy_to_pixel,
    hex_to_rgb,
    render_slice,
    slice_figure_dict,
)
from segloop.display.windowing import apply_window


def _decode(png: bytes, mode: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert(mode))


def _uri_png(uri: str) -> bytes:
    assert uri.startswith("data:image/png;base64,")
    return base64.b64decode(uri.split(",", 1)[1])


@pytest.fixture()
def scan() -> tuple[np.ndarray, np.ndarray]:
    """An asymmetric 3D ramp (every voxel distinct) and a label map with two labels."""
    x, y, z = np.meshgrid(np.arange(12), np.arange(9), np.arange(7), indexing="ij")
    image = (x * 100 + y * 10 + z).astype(np.float32)
    labels = np.zeros(image.shape, dtype=np.uint8)
    labels[2:6, 3:7, 1:5] = 1
    labels[7:10, 1:3, 2:6] = 2
    return image, labels


@pytest.mark.parametrize("plane", planes.PLANES)
def test_png_is_the_windowed_slice_in_screen_orientation(scan, plane) -> None:
    image, labels = scan
    index = 3
    center, width = 600.0, 1200.0
    out = render_slice(image, labels, plane, index, center, width)
    grey = _decode(out.grey_png, "L")
    expected = apply_window(planes.slice_view(image, plane, index), center, width)
    assert grey.shape == planes.slice_shape(image.shape, plane)
    np.testing.assert_array_equal(grey, expected)
    # top-left pixel is the voxel planes.display_to_voxel says it is
    i, j, k = planes.display_to_voxel(plane, index, 0, 0, image.shape)
    assert grey[0, 0] == apply_window(np.array([[image[i, j, k]]]), center, width)[0, 0]


@pytest.mark.parametrize("plane", planes.PLANES)
def test_overlay_colour_exactly_at_label_voxels(scan, plane) -> None:
    image, labels = scan
    style = OverlayStyle.make({1: "#ff0000", 2: "#00ff00"})
    index = {"axial": 3, "coronal": 2, "sagittal": 8}[plane]
    out = render_slice(image, labels, plane, index, 600, 1200, style)
    rgba = _decode(out.overlay_png, "RGBA")
    lab = planes.slice_view(labels, plane, index)
    assert lab.any()
    for value, colour in ((1, "#ff0000"), (2, "#00ff00")):
        at = lab == value
        if at.any():
            assert (rgba[at][:, :3] == hex_to_rgb(colour)).all()
            assert (rgba[at][:, 3] == 255).all()
    assert (rgba[lab == 0][:, 3] == 0).all()


def test_hidden_label_and_overlay_off(scan) -> None:
    image, labels = scan
    out = render_slice(image, labels, "axial", 3, 600, 1200, OverlayStyle.make(hidden={2}))
    rgba = _decode(out.overlay_png, "RGBA")
    lab = planes.slice_view(labels, "axial", 3)
    assert (rgba[lab == 2][:, 3] == 0).all() and (rgba[lab == 1][:, 3] == 255).all()
    assert render_slice(image, labels, "axial", 3, 600, 1200, OverlayStyle.make(visible=False)).overlay_png is None
    assert render_slice(image, np.zeros_like(labels), "axial", 3, 600, 1200).overlay_png is None


def test_contour_only_on_boundaries() -> None:
    lab = np.zeros((10, 10), dtype=np.uint8)
    lab[2:8, 2:8] = 1
    edge = boundary_mask(lab)
    assert edge[2, 2:8].all() and edge[7, 2:8].all() and edge[2:8, 2].all() and edge[2:8, 7].all()
    assert not edge[3:7, 3:7].any()  # interior
    assert not edge[lab == 0].any()  # never outside the label
    vol = np.zeros((10, 10, 3), dtype=np.uint8)
    vol[:, :, 1] = lab[::-1, ::-1].T  # so that the axial view of slice 1 is `lab`
    np.testing.assert_array_equal(planes.slice_view(vol, "axial", 1), lab)
    out = render_slice(np.zeros(vol.shape, np.float32), vol, "axial", 1, 0, 1, OverlayStyle.make(contour=True))
    alpha = _decode(out.overlay_png, "RGBA")[:, :, 3]
    np.testing.assert_array_equal(alpha > 0, edge)


def test_anisotropic_spacing_keeps_aspect() -> None:
    image = np.zeros((20, 30, 10), dtype=np.float32)
    spacing = (0.5, 0.8, 3.0)
    d = slice_figure_dict(image, None, "coronal", 4, spacing=spacing, center=0, width=1)
    img = d["data"][0]
    assert (img["dx"], img["dy"]) == (0.5, 3.0)  # coronal: columns along x, rows along z
    assert d["layout"]["yaxis"]["scaleanchor"] == "x" and d["layout"]["yaxis"]["scaleratio"] == 1
    rows, cols = planes.slice_shape(image.shape, "coronal")
    xr, yr = d["layout"]["xaxis"]["range"], d["layout"]["yaxis"]["range"]
    assert (xr[1] - xr[0]) == pytest.approx(cols * 0.5) and (yr[0] - yr[1]) == pytest.approx(rows * 3.0)
    assert figure_xy_to_pixel(2 * 0.5, 5 * 3.0, "coronal", spacing) == (5, 2)


def test_figure_is_valid_plotly_with_edges_hover_and_selection(scan) -> None:
    image, labels = scan
    affine = np.array([[2, 0, 0, -10], [0, 2, 0, 5], [0, 0, 2, 1], [0, 0, 0, 1]], dtype=float)
    kwargs = dict(spacing=(2.0, 2.0, 2.0), center=600, width=1200, affine=affine, label_names={1: "anterior"})
    fig = go.Figure(slice_figure_dict(image, labels, "sagittal", 4, selectable=True, dragmode="lasso", **kwargs))
    assert {a.text for a in fig.layout.annotations} == set(planes.EDGE_LABELS["sagittal"])
    assert fig.layout.dragmode == "lasso"
    types = [t.type for t in fig.data]
    assert types == ["image", "image", "heatmap", "scattergl"]
    hover = fig.data[2]
    r, c = 2, 5
    voxel = planes.display_to_voxel("sagittal", 4, r, c, image.shape)
    assert tuple(hover.customdata[r][c][:3]) == voxel
    assert tuple(np.round(hover.customdata[r][c][3:], 2)) == tuple(np.round((affine @ [*voxel, 1.0])[:3], 2))
    assert hover.z[r][c] == image[voxel]
    rows, cols = planes.slice_shape(image.shape, "sagittal")
    assert len(fig.data[3].x) == rows * cols
    # zoom survives a slice change of the same scan
    other = build_slice_figure(image, labels, "sagittal", 5, **kwargs)
    assert other.layout.uirevision == fig.layout.uirevision
    assert _decode(_uri_png(other.data[0].source), "L").shape == (rows, cols)


def test_payload_is_small_for_a_large_slice() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:256, 0:256]
    brainish = (np.hypot(xx - 128, yy - 128) < 100) * (80 + 20 * np.sin(xx / 9.0) * np.cos(yy / 7.0))
    image = np.repeat((brainish + rng.normal(0, 2, brainish.shape))[:, :, None], 3, axis=2).astype(np.float32)
    labels = np.zeros(image.shape, dtype=np.uint8)
    labels[100:140, 110:150, :] = 1
    json_text = build_slice_figure(image, labels, "axial", 1, spacing=(1, 1, 1), center=60, width=140).to_json()
    # a float32 heatmap of the same slice alone would be 256*256*4*4/3 ~ 350 kB
    assert len(json_text) < 100_000


def test_label_volumes_ml_exact() -> None:
    lab = np.zeros((10, 10, 10), dtype=np.uint8)
    lab[:2, :5, :4] = 1  # 40 voxels
    lab[5, 5, 5] = 3  # 1 voxel
    rows = label_volumes_ml(lab, (0.5, 2.0, 3.0), {1: "anterior"})  # 3 mm^3 per voxel
    assert rows == [
        {"label": 1, "name": "anterior", "voxels": 40, "ml": pytest.approx(0.12)},
        {"label": 3, "name": "label 3", "voxels": 1, "ml": pytest.approx(0.003)},
    ]
