"""What browser tests do with the volume view (components/volume_view.js): find a plane, wait for it, step
it, read the pixels it shows, and turn slice pixels into screen positions.

The view is one element per page (key `viewer_view` on the Viewer, `seg_view` on Segment) holding one
`.vv-cell[data-plane=...]` per plane. A cell says which slice it shows (`data-slice`), which slice its
image finished drawing (`data-drawn`) and whether the volume arrived (`data-loaded="1"`). Its `.vv-plot`
is a Plotly graph: layout.images[0] is the windowed slice as a PNG data URL; figure x = col * col_mm,
y = row * row_mm, pixel centres at integers.
"""

from __future__ import annotations

import numpy as np

from segloop.display import planes
from segloop.display.windowing import apply_window

VIEWER, SEGMENT = "viewer_view", "seg_view"


def cell_selector(key: str, plane: str) -> str:
    return f".st-key-{key} .vv-cell[data-plane={plane}]"


def cell(page, key: str, plane: str):
    return page.locator(cell_selector(key, plane))


def wait_loaded(page, key: str, plane_names=planes.PLANES, timeout_ms: int = 120_000) -> None:
    """Wait until every plane holds the volume and has drawn the slice it shows."""
    page.wait_for_function(
        """([sel, names]) => names.every(p => {
             const c = document.querySelector(`${sel} .vv-cell[data-plane=${p}]`);
             return c && c.dataset.loaded === '1' && c.dataset.drawn !== undefined && c.dataset.drawn === c.dataset.slice;
           })""",
        arg=[f".st-key-{key}", list(plane_names)], timeout=timeout_ms)


def shown(page, key: str, plane: str) -> int:
    """The slice index the plane shows (0-based)."""
    return int(cell(page, key, plane).get_attribute("data-slice"))


def wait_shown(page, key: str, plane: str, index: int, timeout_ms: int = 30_000) -> None:
    """Wait until the plane shows slice `index` and has finished drawing it."""
    page.wait_for_function(
        """([sel, k]) => { const c = document.querySelector(sel);
             return c && c.dataset.slice === k && c.dataset.drawn === k && c.dataset.loaded === '1'; }""",
        arg=[cell_selector(key, plane), str(index)], timeout=timeout_ms)


def hover(page, key: str, plane: str, fx: float = 0.5, fy: float = 0.5) -> None:
    """Put the pointer over the plane's plot (the cell takes the keyboard focus on pointerenter)."""
    box = cell(page, key, plane).locator(".vv-plot").bounding_box()
    page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)


def wheel(page, steps: int) -> None:
    """Turn the mouse wheel over the view under the pointer: `steps` > 0 away from the user (next slices)."""
    for _ in range(abs(steps)):
        page.mouse.wheel(0, -100 if steps > 0 else 100)


#: JS: the pixels of a plane's images[0] (its PNG data URL drawn into a canvas here), red channel, row-major.
_IMAGE_PIXELS = """async (sel) => {
  const gd = document.querySelector(sel + ' .vv-plot');
  const src = gd.layout.images[0].source;
  const shown = Array.from(gd.querySelectorAll('.layer-subplot .imagelayer image, .layer-below .imagelayer image'))
    .map(el => el.getAttribute('href') || el.getAttributeNS('http://www.w3.org/1999/xlink', 'href'));
  const img = new Image();
  img.src = src;
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const rgba = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const red = new Array(canvas.width * canvas.height);
  let grey = true;
  for (let i = 0; i < red.length; i++) {
    red[i] = rgba[4 * i];
    if (rgba[4 * i + 1] !== red[i] || rgba[4 * i + 2] !== red[i] || rgba[4 * i + 3] !== 255) grey = false;
  }
  return {width: canvas.width, height: canvas.height, red, grey, onScreen: shown.includes(src)};
}"""


def slice_pixels(page, key: str, plane: str) -> np.ndarray:
    """Grey levels (rows, cols) of the slice image a plane shows, decoded by the browser itself."""
    got = page.evaluate(_IMAGE_PIXELS, cell_selector(key, plane))
    assert got["onScreen"], f"the {plane} scan image in the layout is not the one on screen"
    assert got["grey"], f"the {plane} scan image is not opaque grey"
    return np.asarray(got["red"], np.uint8).reshape(got["height"], got["width"])


def expected_pixels(array: np.ndarray, plane: str, index: int, center: float, width: float) -> np.ndarray:
    """What the server would show: `apply_window` of `planes.slice_view`."""
    return apply_window(planes.slice_view(array, plane, index), center, width)


def window(page, prefix: str = "") -> tuple[float, float]:
    """(center, width) the page's sidebar shows (keys `<prefix>window_center`, `<prefix>window_width`)."""
    center = float(page.locator(f".st-key-{prefix}window_center input").input_value())
    width = float(page.locator(f".st-key-{prefix}window_width input").input_value())
    return center, width


#: JS: screen position (client px) of figure coordinates (x, y) in a plane, through Plotly's own axis mapping.
_TO_SCREEN = """([sel, pts]) => {
  const gd = document.querySelector(sel + ' .vv-plot');
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
  return pts.map(([x, y]) => [box.left + xa.d2p(x), box.top + ya.d2p(y)]);
}"""


def pixel_mm(page, key: str, plane: str) -> tuple[float, float]:
    """(row_mm, col_mm) of the plane's pixels, as the view uses them."""
    return tuple(page.evaluate("([sel, plane]) => document.querySelector(sel).__vv.data.pixel_mm[plane]",
                               [f".st-key-{key} .segloop-vv", plane]))


def to_screen(page, key: str, plane: str, pixels: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Screen positions of slice pixel coordinates (row, col) (centres at integers) of a plane."""
    row_mm, col_mm = pixel_mm(page, key, plane)
    pts = [[c * col_mm, r * row_mm] for r, c in pixels]
    return [tuple(p) for p in page.evaluate(_TO_SCREEN, [cell_selector(key, plane), pts])]


def dragmode(page, key: str, plane: str) -> str:
    return page.evaluate("(sel) => String(document.querySelector(sel + ' .vv-plot')._fullLayout.dragmode)",
                         cell_selector(key, plane))


def wait_dragmode(page, key: str, mode: str, timeout_ms: int = 30_000) -> None:
    """Wait until every plane of the view drags in `mode` ("select", "lasso", "pan", "false" for the brush)."""
    page.wait_for_function(
        """([sel, mode]) => { const plots = document.querySelectorAll(sel + ' .vv-plot');
             return plots.length > 0 && Array.from(plots).every(gd => gd._fullLayout && String(gd._fullLayout.dragmode) === mode); }""",
        arg=[f".st-key-{key}", mode], timeout=timeout_ms)


#: JS: keep a copy of every edit the view sends to the server (window.__sentEdits).
RECORD_EDITS = """(sel) => {
  const vv = document.querySelector(sel).__vv;
  window.__sentEdits = window.__sentEdits || [];
  if (!vv.__recording) {
    const send = vv.edit.bind(vv);
    vv.edit = (e) => { window.__sentEdits.push(JSON.parse(JSON.stringify(e))); send(e); };
    vv.__recording = true;
  }
}"""


def record_edits(page, key: str) -> None:
    page.evaluate(RECORD_EDITS, f".st-key-{key} .segloop-vv")


def sent_edits(page) -> list[dict]:
    return page.evaluate("() => window.__sentEdits || []")


#: JS: label values of the slice a plane shows, from the view's own copy of the label map (row-major).
_SHOWN_LABELS = """([sel, plane]) => {
  const vv = document.querySelector(sel).__vv;
  const g = vv.data.geometry[plane], k = vv.slices[plane], lab = vv.labels;
  if (!lab) return null;
  const out = [];
  for (let r = 0; r < g.rows; r++) for (let c = 0; c < g.cols; c++) out.push(lab[vv.offset(g, k, r, c)]);
  return {rows: g.rows, cols: g.cols, values: out};
}"""


def shown_labels(page, key: str, plane: str) -> np.ndarray:
    """Label values (rows, cols) of the slice a plane shows, as the browser holds them."""
    page.wait_for_function("(sel) => !!document.querySelector(sel).__vv.labels", arg=f".st-key-{key} .segloop-vv",
                           timeout=60_000)
    got = page.evaluate(_SHOWN_LABELS, [f".st-key-{key} .segloop-vv", plane])
    return np.asarray(got["values"], np.int64).reshape(got["rows"], got["cols"])
