"""End to end: the volume view steps, draws, edits and links planes in the browser as a desktop viewer does.

Runs the real app (Streamlit server) in headless chromium: on a Decathlon crop (the shared MSD
hippocampus folder) and on the whole-head MNI152 demo (a server started without SEGLOOP_DATA_DIR).
What the page shows is checked against what the server computes for the same slice:
`apply_window(planes.slice_view(volume, plane, k), center, width)` with the window the sidebar shows,
and edits are checked in the label file the Save button wrote to the workspace.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from e2e import view_helpers as vh
from e2e.page_helpers import no_exception, save_correction, wait_idle
from segloop.data.demo import mni152_t1_path
from segloop.display import planes
from segloop.editing.operations import polygon_mask, stroke_mask
from segloop.io.readers import load_label, load_scan
from segloop.store.database import Datastore
from segloop.store.label_versions import list_versions, load_version

pytestmark = pytest.mark.e2e

STEP_CASE = "hippocampus_015"  # read-only here
EDIT_CASE = "hippocampus_033"  # no other browser test touches these two: their versions are this file's own
UNDO_CASE = "hippocampus_034"
POSTERIOR = 2


@pytest.fixture(scope="module")
def demo_url(start_server, artifacts_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server without SEGLOOP_DATA_DIR: it opens the built-in whole-head MNI152 demo."""
    with start_server(None, tmp_path_factory.mktemp("demo-ws"), artifacts_dir / "streamlit-demo.log") as base:
        yield base


def _max_grey_error(page, key: str, array: np.ndarray, plane: str, prefix: str = "") -> int:
    center, width = vh.window(page, prefix)
    got = vh.slice_pixels(page, key, plane)
    want = vh.expected_pixels(array, plane, vh.shown(page, key, plane), center, width)
    assert got.shape == want.shape, f"{plane}: shown {got.shape}, expected {want.shape}"
    return int(np.abs(got.astype(int) - want.astype(int)).max())


def _step_and_check(page, array: np.ndarray, artifacts_dir: Path, name: str) -> None:
    key = vh.VIEWER
    vh.wait_loaded(page, key)
    wait_idle(page)
    no_exception(page)
    for plane in planes.PLANES:  # what the page opened on is already right
        assert _max_grey_error(page, key, array, plane) <= 1, f"{plane} slice as opened"

    # axial: keys and wheel; +4 -3 +5 -2 = +4
    k0 = vh.shown(page, key, "axial")
    vh.hover(page, key, "axial")
    for _ in range(4):
        page.keyboard.press("ArrowUp")
    vh.wheel(page, -3)  # towards the user: previous slices
    page.keyboard.press("PageUp")
    for _ in range(2):
        page.keyboard.press("ArrowDown")
    vh.wait_shown(page, key, "axial", k0 + 4)
    n_axial = planes.n_slices(array.shape, "axial")
    assert vh.cell(page, key, "axial").locator(".vv-title").inner_text() == f"Axial {k0 + 5} / {n_axial}"
    assert _max_grey_error(page, key, array, "axial") <= 1, "the axial image is not the slice the title names"

    # coronal: wheel away 6, PageDown, ArrowUp = +2
    c0 = vh.shown(page, key, "coronal")
    vh.hover(page, key, "coronal")
    vh.wheel(page, 6)
    page.keyboard.press("PageDown")
    page.keyboard.press("ArrowUp")
    vh.wait_shown(page, key, "coronal", c0 + 2)
    assert _max_grey_error(page, key, array, "coronal") <= 1
    assert vh.shown(page, key, "axial") == k0 + 4, "stepping coronal moved the axial view"

    how = {(t["plane"], t["how"]) for t in page.evaluate("() => window.__segloopVV.timings")}
    assert {("axial", "key"), ("axial", "wheel"), ("coronal", "wheel"), ("coronal", "key")} <= how, how
    page.screenshot(path=str(artifacts_dir / f"volume-view-steps-{name}.png"))


def test_keys_and_wheel_step_a_crop(page, app_url: str, msd_dir: Path, artifacts_dir: Path) -> None:
    page.goto(f"{app_url}/?case={STEP_CASE}", wait_until="domcontentloaded")
    array = load_scan(msd_dir / "imagesTr" / f"{STEP_CASE}.nii.gz").array
    _step_and_check(page, array, artifacts_dir, "crop")


def test_keys_and_wheel_step_the_whole_head_demo(page, demo_url: str, artifacts_dir: Path) -> None:
    page.goto(f"{demo_url}/", wait_until="domcontentloaded")
    page.get_by_text(re.compile(r"^mni152_t1 · shape")).wait_for(timeout=180_000)
    array = load_scan(mni152_t1_path()).array
    _step_and_check(page, array, artifacts_dir, "whole-head")


def test_click_moves_the_other_planes_to_the_voxel(page, app_url: str, msd_dir: Path, artifacts_dir: Path) -> None:
    page.goto(f"{app_url}/?case={STEP_CASE}", wait_until="domcontentloaded")
    key = vh.VIEWER
    vh.wait_loaded(page, key)
    wait_idle(page)
    array = load_scan(msd_dir / "imagesTr" / f"{STEP_CASE}.nii.gz").array
    vh.hover(page, key, "axial")
    vh.wheel(page, 2)  # a slice the page did not open on
    k = vh.shown(page, key, "axial")
    vh.wait_shown(page, key, "axial", k)
    rows, cols = planes.slice_shape(array.shape, "axial")
    row, col = rows // 3, (2 * cols) // 3  # off the centre, so every plane has to move
    voxel = planes.display_to_voxel("axial", k, row, col, array.shape)
    assert voxel[1] != vh.shown(page, key, "coronal") and voxel[0] != vh.shown(page, key, "sagittal")

    (x, y), = vh.to_screen(page, key, "axial", [(row, col)])
    page.mouse.click(x, y)
    vh.wait_shown(page, key, "coronal", voxel[planes.PLANE_AXIS["coronal"]])
    vh.wait_shown(page, key, "sagittal", voxel[planes.PLANE_AXIS["sagittal"]])
    assert vh.shown(page, key, "axial") == k, "the clicked plane stays where it is"
    for plane in planes.PLANES:
        assert _max_grey_error(page, key, array, plane) <= 1, plane
        lines = page.evaluate(
            "(sel) => (document.querySelector(sel + ' .vv-plot').layout.shapes || []).filter(s => s.type === 'line')"
            ".map(s => [s.x0, s.x1, s.y0, s.y1])", vh.cell_selector(key, plane))
        row_mm, col_mm = vh.pixel_mm(page, key, plane)
        r, c = planes.voxel_to_display(plane, voxel, array.shape)[1:]
        vertical = [ln for ln in lines if ln[0] == ln[1]]
        horizontal = [ln for ln in lines if ln[2] == ln[3]]
        assert [ln[0] for ln in vertical] == [pytest.approx(c * col_mm)], f"{plane}: crosshair column {lines}"
        assert [ln[2] for ln in horizontal] == [pytest.approx(r * row_mm)], f"{plane}: crosshair row {lines}"
    page.screenshot(path=str(artifacts_dir / "volume-view-crosshair.png"))


def _pick(page, group: str, text: str) -> None:
    page.locator(f".st-key-{group}").get_by_text(text, exact=True).click()
    wait_idle(page)


def _drag(page, points: list[tuple[float, float]], steps: int = 8) -> None:
    page.mouse.move(*points[0])
    page.mouse.down()
    for p in points[1:]:
        page.mouse.move(*p, steps=steps)
    page.mouse.up()


def _changed_message(page, what: str, plane: str, index: int):
    msg = page.get_by_text(re.compile(rf"{what} posterior on {plane} {index}: \d+ voxels changed"))
    msg.wait_for(timeout=60_000)
    wait_idle(page)
    no_exception(page)
    return msg


def test_box_lasso_and_brush_land_on_the_slice_shown(page, app_url: str, app_workspace: Path, msd_dir: Path,
                                                     artifacts_dir: Path) -> None:
    key = vh.SEGMENT
    page.goto(f"{app_url}/segment?case={EDIT_CASE}", wait_until="domcontentloaded")
    vh.wait_loaded(page, key)
    wait_idle(page)
    no_exception(page)
    scan = load_scan(msd_dir / "imagesTr" / f"{EDIT_CASE}.nii.gz")
    before = load_label(msd_dir / "labelsTr" / f"{EDIT_CASE}.nii.gz", reference=scan).array
    shape = planes.slice_shape(scan.shape, "axial")
    _pick(page, "seg_label", "posterior")
    k0 = vh.shown(page, key, "axial")

    # box, three slices up (scrolled in the browser only): rows 6..12, columns 9..18
    _pick(page, "seg_tool", "Box")
    vh.wait_dragmode(page, key, "select")
    vh.record_edits(page, key)
    vh.hover(page, key, "axial")
    vh.wheel(page, 3)
    k_box = k0 + 3
    vh.wait_shown(page, key, "axial", k_box)
    _drag(page, vh.to_screen(page, key, "axial", [(5.6, 8.6), (9.0, 13.5), (12.4, 18.4)]))
    _changed_message(page, "Box fill", "axial", k_box)
    assert page.get_by_text(f"Last box applied: axial {k_box}: rows 6–12, columns 9–18").count() == 1
    box = np.zeros(shape, bool)
    box[6:13, 9:19] = True

    # lasso, five slices down
    _pick(page, "seg_tool", "Lasso")
    vh.wait_dragmode(page, key, "lasso")
    vh.record_edits(page, key)
    vh.hover(page, key, "axial")
    vh.wheel(page, -5)
    k_lasso = k_box - 5
    vh.wait_shown(page, key, "axial", k_lasso)
    outline = [(20.3, 4.3), (20.3, 14.7), (30.7, 14.7), (30.7, 9.4), (25.4, 4.3), (20.3, 4.3)]
    _drag(page, vh.to_screen(page, key, "axial", outline))
    _changed_message(page, "Lasso fill", "axial", k_lasso)

    # brush, one slice up
    _pick(page, "seg_tool", "Brush")
    vh.wait_dragmode(page, key, "false")
    vh.record_edits(page, key)
    vh.hover(page, key, "axial")
    vh.wheel(page, 1)
    k_brush = k_lasso + 1
    vh.wait_shown(page, key, "axial", k_brush)
    _drag(page, vh.to_screen(page, key, "axial", [(38.0, 8.0), (38.0, 24.0)]), steps=15)
    _changed_message(page, "Brush fill", "axial", k_brush)
    page.screenshot(path=str(artifacts_dir / "volume-view-edits.png"))

    sent = vh.sent_edits(page)
    assert [(e["tool"], e["plane"], e["index"]) for e in sent] == [
        ("box", "axial", k_box), ("lasso", "axial", k_lasso), ("brush", "axial", k_brush)], sent
    row_mm, col_mm = vh.pixel_mm(page, key, "axial")
    lasso_pts = sent[1]["selection"]["lasso"][-1]
    lasso = polygon_mask(shape, np.asarray(lasso_pts["y"]) / row_mm, np.asarray(lasso_pts["x"]) / col_mm)
    assert lasso[22:29, 7:13].all() and not lasso[:19].any() and not lasso[32:].any(), "the lasso is not the outline drawn"
    brush = stroke_mask(shape, [tuple(p) for p in sent[2]["points"]], sent[2]["radius"])
    assert brush[38, 10:23].all() and not brush[:34].any() and not brush[43:].any(), "the stroke is not the one drawn"

    save_correction(page, "E2E volume view")

    store = Datastore(workspace=app_workspace)
    (record,) = [s for s in store.scans_named(EDIT_CASE)]
    newest = max(list_versions(store, record.id), key=lambda v: v.version)
    assert newest.kind == "correction" and newest.author == "E2E volume view"
    saved = load_version(store, newest.id, scan)
    changed = saved != before
    assert set(np.unique(np.nonzero(changed)[2])) == {k_box, k_lasso, k_brush}, "edits left the slices they were drawn on"
    for k, mask in ((k_box, box), (k_lasso, lasso), (k_brush, brush)):
        was = planes.slice_view(before, "axial", k)
        now = planes.slice_view(saved, "axial", k)
        assert (now[mask] == POSTERIOR).all(), f"axial {k}: not every voxel of the outline is posterior"
        assert np.array_equal(planes.slice_view(changed, "axial", k), mask & (was != POSTERIOR)), \
            f"axial {k}: voxels outside the outline changed"


def _table(page, until=lambda table: True, timeout_s: float = 60.0) -> dict[str, float]:
    """{Name: Current (mL)} of the Segment page's volume table, once `until(table)` holds (the grid redraws late)."""
    rows_js = """() => {
      for (const grid of document.querySelectorAll('[data-testid="stDataFrame"] table[role="grid"]')) {
        const head = Array.from(grid.querySelectorAll('th')).map(th => th.textContent.trim());
        if (!head.includes('Current (mL)')) continue;
        return [head, ...Array.from(grid.querySelectorAll('tr')).map(
          tr => Array.from(tr.querySelectorAll('td')).map(td => td.textContent.trim())).filter(r => r.length)];
      }
      return null;
    }"""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = page.evaluate(rows_js)
        if rows is not None:
            head, *body = rows
            table = {r[head.index("Name")]: float(r[head.index("Current (mL)")]) for r in body}
            if until(table):
                return table
        if time.monotonic() > deadline:
            return table if rows is not None else pytest.fail("no volume table on the page")
        page.wait_for_timeout(250)


def test_ctrl_z_undoes_the_last_edit(page, app_url: str, artifacts_dir: Path) -> None:
    key = vh.SEGMENT
    page.goto(f"{app_url}/segment?case={UNDO_CASE}", wait_until="domcontentloaded")
    vh.wait_loaded(page, key)
    wait_idle(page)
    _pick(page, "seg_label", "posterior")
    _pick(page, "seg_tool", "Box")
    vh.wait_dragmode(page, key, "select")
    before = _table(page)

    k = vh.shown(page, key, "axial") - 2
    vh.hover(page, key, "axial")
    vh.wheel(page, -2)
    vh.wait_shown(page, key, "axial", k)
    _drag(page, vh.to_screen(page, key, "axial", [(3.6, 3.6), (8.0, 8.0), (14.4, 16.4)]))
    msg = _changed_message(page, "Box fill", "axial", k)
    changed = int(re.search(r"(\d+) voxels changed", msg.inner_text()).group(1))
    assert changed > 0
    grown = _table(page, lambda t: abs(t["posterior"] - before["posterior"] - changed / 1000) <= 0.0015)
    assert grown["posterior"] == pytest.approx(before["posterior"] + changed / 1000, abs=0.0015), (before, grown)

    page.mouse.move(5, 5)  # out and back in: the view takes the keyboard focus on pointerenter
    vh.hover(page, key, "axial")
    page.keyboard.press("Control+z")
    page.get_by_text(f"Undone: Box fill posterior on axial {k}").wait_for(timeout=60_000)
    wait_idle(page)
    no_exception(page)
    after = _table(page, lambda t: t["posterior"] == before["posterior"])
    assert after["posterior"] == pytest.approx(before["posterior"], abs=1e-9), (before, after)
    page.get_by_text(re.compile(r"^No unsaved changes")).wait_for(timeout=30_000)
    page.screenshot(path=str(artifacts_dir / "volume-view-undo.png"))
