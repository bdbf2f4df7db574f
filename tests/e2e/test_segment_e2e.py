"""End to end: segment a case, drag a box with the mouse on the axial slice, save, check the file on disk.

Runs the real app (Streamlit server) in headless chromium against the real MSD hippocampus data and
the shipped model. The drag goes between screen points that Plotly's own axis mapping (`d2p`) gives for
chosen pixel-centre coordinates of the axial view (1 mm pixels: figure x = column, y = row), so the
pixel rectangle the box must fill is known.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from e2e import view_helpers as vh
from e2e.page_helpers import no_exception, run_segmentation, save_correction, wait_idle
from segloop.config import WEIGHTS_DIR
from segloop.display import planes
from segloop.io.readers import load_label, load_scan

pytestmark = pytest.mark.e2e

CASE = "hippocampus_001"
PLANE, INDEX = "axial", 35 // 2  # the page opens on the middle slice
POSTERIOR = 2
DOWNLOAD_CASE = "hippocampus_019"  # no other browser test touches it: its versions are the download test's own


def _saved_file(page) -> Path:
    """The path of the label file the Segment page says it just saved."""
    saved = page.get_by_text(re.compile(r"Saved file: ")).inner_text()
    return Path(re.search(r"Saved file: `?(\S+\.nii\.gz)", saved).group(1))


def test_segment_draw_box_and_save(page, app_url: str, msd_dir: Path, artifacts_dir: Path) -> None:
    if not (WEIGHTS_DIR / "hippocampus-unet-v1.onnx").is_file():
        pytest.skip("the shipped model is missing")
    run_segmentation(page, app_url, CASE)
    vh.wait_loaded(page, vh.SEGMENT)
    no_exception(page)

    page.locator(".st-key-seg_tool").get_by_text("Box", exact=True).click()
    page.locator(".st-key-seg_label").get_by_text("posterior", exact=True).click()
    wait_idle(page)
    vh.wait_dragmode(page, vh.SEGMENT, "select")
    assert vh.shown(page, vh.SEGMENT, PLANE) == INDEX

    vh.cell(page, vh.SEGMENT, PLANE).scroll_into_view_if_needed()
    (r0, c0), (r1, c1) = (5.3, 10.3), (12.7, 20.6)  # pixel-centre coordinates: covers cols 11..20, rows 6..12
    exp_rows, exp_cols = (6, 12), (11, 20)
    start, middle, end = vh.to_screen(page, vh.SEGMENT, PLANE, [(r0, c0), ((r0 + r1) / 2, (c0 + c1) / 2), (r1, c1)])
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*middle, steps=5)
    page.mouse.move(*end, steps=10)
    page.mouse.up()

    applied = page.get_by_text(re.compile("Last box applied"))
    applied.wait_for(timeout=60_000)
    wait_idle(page)
    no_exception(page)
    text = applied.inner_text()
    assert f"rows {exp_rows[0]}–{exp_rows[1]}, columns {exp_cols[0]}–{exp_cols[1]}" in text, text
    assert f"axial {INDEX}" in text, text

    assert save_correction(page, "E2E tester").inner_text().startswith("Saved as version 2")
    page.screenshot(path=str(artifacts_dir / "segment-saved.png"), full_page=True)
    vh.cell(page, vh.SEGMENT, PLANE).scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts_dir / "segment.png"), full_page=True)

    path = _saved_file(page)
    assert path.name == "v002_correction.nii.gz" and path.is_file()
    model_path = path.with_name("v001_model.nii.gz")
    scan = load_scan(msd_dir / "imagesTr" / f"{CASE}.nii.gz")
    corrected = load_label(path, reference=scan).array
    model = load_label(model_path, reference=scan).array

    inside = np.zeros(scan.shape, bool)
    planes.slice_view(inside, PLANE, INDEX)[exp_rows[0]:exp_rows[1] + 1, exp_cols[0]:exp_cols[1] + 1] = True
    assert (corrected[inside] == POSTERIOR).all(), "every voxel inside the box is posterior now"
    assert np.array_equal(corrected[~inside], model[~inside]), "no voxel outside the box changed"
    assert (corrected != model).any(), "the box changed something"


def test_brush_stroke_paints_the_slice(page, app_url: str, artifacts_dir: Path) -> None:
    if not (WEIGHTS_DIR / "hippocampus-unet-v1.onnx").is_file():
        pytest.skip("the shipped model is missing")
    page.goto(f"{app_url}/segment?case=hippocampus_003", wait_until="domcontentloaded")
    vh.wait_loaded(page, vh.SEGMENT)
    wait_idle(page)
    page.locator(".st-key-seg_tool").get_by_text("Brush", exact=True).click()
    wait_idle(page)
    vh.wait_dragmode(page, vh.SEGMENT, "false")  # the brush paints; Plotly does not drag
    plot = vh.cell(page, vh.SEGMENT, PLANE).locator(".nsewdrag")
    plot.scroll_into_view_if_needed()
    box = plot.bounding_box()
    x0, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5
    page.mouse.move(x0, y)
    page.mouse.down()
    page.mouse.move(x0 + box["width"] * 0.4, y, steps=15)
    page.mouse.up()
    msg = page.get_by_text(re.compile(r"Brush fill (anterior|posterior) on axial \d+: \d+ voxels changed"))
    msg.wait_for(timeout=60_000)
    wait_idle(page)
    no_exception(page)
    page.screenshot(path=str(artifacts_dir / "segment-brush.png"), full_page=True)
    assert int(re.search(r"(\d+) voxels changed", msg.inner_text()).group(1)) > 5


def test_click_deletes_a_component(page, app_url: str) -> None:
    """A click with the 'Delete component' tool on a labelled pixel erases that 3D piece."""
    if not (WEIGHTS_DIR / "hippocampus-unet-v1.onnx").is_file():
        pytest.skip("the shipped model is missing")
    page.goto(f"{app_url}/segment?case=hippocampus_007", wait_until="domcontentloaded")
    vh.wait_loaded(page, vh.SEGMENT)
    wait_idle(page)
    page.locator(".st-key-seg_tool").get_by_text("Delete component", exact=True).click()
    wait_idle(page)
    vh.wait_dragmode(page, vh.SEGMENT, "pan")
    vh.cell(page, vh.SEGMENT, PLANE).scroll_into_view_if_needed()
    # a labelled pixel well inside its region on the slice shown (the browser's own copy of the labels)
    sl = vh.shown_labels(page, vh.SEGMENT, PLANE)
    inner = (sl > 0) & (np.roll(sl, 1, 0) == sl) & (np.roll(sl, -1, 0) == sl) & (np.roll(sl, 1, 1) == sl) \
        & (np.roll(sl, -1, 1) == sl)
    assert inner.any(), "no labelled pixel on the slice shown"
    r, c = np.argwhere(inner)[len(np.argwhere(inner)) // 2]
    (x, y), = vh.to_screen(page, vh.SEGMENT, PLANE, [(float(r), float(c))])
    page.mouse.click(x, y)
    msg = page.get_by_text(re.compile(r"Delete component of (anterior|posterior) in 3D: \d+ voxels changed"))
    msg.wait_for(timeout=60_000)
    wait_idle(page)
    no_exception(page)
    assert int(re.search(r"(\d+) voxels changed", msg.inner_text()).group(1)) > 100


def test_download_of_the_newest_version_matches_the_saved_file(page, app_url: str, msd_dir: Path,
                                                                tmp_path: Path) -> None:
    """A correction saved on its own case: reopened, the version list offers it first and downloads that file."""
    if not (WEIGHTS_DIR / "hippocampus-unet-v1.onnx").is_file():
        pytest.skip("the shipped model is missing")
    run_segmentation(page, app_url, DOWNLOAD_CASE)
    page.locator(".st-key-seg_grow button").click()  # one edit: grow the first label by a voxel
    page.get_by_text(re.compile(r"Unsaved changes: \d+ voxels")).wait_for(timeout=60_000)
    version = int(re.search(r"Saved as version (\d+)", save_correction(page, "E2E tester").inner_text()).group(1))
    path = _saved_file(page)
    assert path.name == f"v{version:03d}_correction.nii.gz" and path.is_file()

    page.goto(f"{app_url}/segment?case={DOWNLOAD_CASE}", wait_until="domcontentloaded")
    button = page.locator(".st-key-seg_download_version button")
    button.wait_for(timeout=120_000)
    wait_idle(page)
    picked = page.locator(".st-key-seg_version_pick").evaluate(
        "el => el.textContent + ' ' + Array.from(el.querySelectorAll('input')).map(i => i.value).join(' ')")
    assert f"v{version}" in picked and "E2E tester" in picked, picked
    with page.expect_download(timeout=60_000) as info:
        button.click()
    download = info.value
    assert download.suggested_filename == f"{DOWNLOAD_CASE}_v{version:03d}_correction.nii.gz"
    got = tmp_path / download.suggested_filename
    download.save_as(got)
    scan = load_scan(msd_dir / "imagesTr" / f"{DOWNLOAD_CASE}.nii.gz")
    assert np.array_equal(load_label(got, reference=scan).array, load_label(path, reference=scan).array)
