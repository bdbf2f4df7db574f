"""End to end: one current case across the pages and the address bar, views that come back as left,
a volume table that follows edits, and uploads that the address bar names.

Runs the real app (Streamlit server) in headless chromium against the real MSD hippocampus data. Pages
are switched with the sidebar's links, as a user does (the browser then drops the query string, so a
page only knows the case from the session).
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from e2e import view_helpers as vh
from e2e.page_helpers import no_exception, run_segmentation, wait_idle
from segloop.config import WEIGHTS_DIR

pytestmark = pytest.mark.e2e

#: JS: the rows of the dataframe whose header has `column`, as lists of cell texts (header first).
TABLE_ROWS = """(column) => {
  for (const grid of document.querySelectorAll('[data-testid="stDataFrame"] table[role="grid"]')) {
    const head = Array.from(grid.querySelectorAll('th')).map(th => th.textContent.trim());
    if (!head.includes(column)) continue;
    const rows = Array.from(grid.querySelectorAll('tr')).map(
      tr => Array.from(tr.querySelectorAll('td')).map(td => td.textContent.trim())).filter(r => r.length);
    return [head, ...rows];
  }
  return null;
}"""




def _go(page, title: str, heading: str) -> None:
    """Click a page in the sidebar navigation and wait for it."""
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=heading).first.wait_for(timeout=120_000)
    wait_idle(page)
    no_exception(page)


def _pick_case(page, name: str) -> None:
    box = page.locator(".st-key-case_select input")
    box.click()
    box.fill(name)
    page.get_by_role("option", name=name, exact=True).click()
    wait_idle(page)


def _scan_box(page) -> str:
    return page.locator(".st-key-case_select input").input_value()


def _axial_pixels(page, key: str = vh.VIEWER) -> np.ndarray:
    """The axial slice the page's volume view shows, once it is drawn."""
    vh.wait_loaded(page, key)
    return vh.slice_pixels(page, key, "axial")


def _table(page, column: str, until=lambda table: True, timeout_ms: int = 60_000) -> dict[str, dict[str, str]]:
    """{Name: {column: text}} of the dataframe that has `column`, once `until(table)` holds (the grid
    redraws a moment after the run that changed it)."""
    page.wait_for_function(f"() => ({TABLE_ROWS})({column!r}) !== null", timeout=timeout_ms)
    for _ in range(timeout_ms // 250):
        head, *body = page.evaluate(TABLE_ROWS, column)
        table = {r[head.index("Name")]: dict(zip(head, r)) for r in body}
        if until(table):
            break
        page.wait_for_timeout(250)
    return table


def test_one_case_across_pages_and_views_come_back(page, app_url: str, artifacts_dir: Path) -> None:
    case = "hippocampus_008"
    page.goto(f"{app_url}/", wait_until="domcontentloaded")
    _axial_pixels(page)
    wait_idle(page)
    no_exception(page)
    _pick_case(page, case)
    page.wait_for_url(re.compile(f"case={case}"), timeout=60_000)
    page.get_by_text(re.compile(f"^{case} · shape")).wait_for(timeout=60_000)
    vh.wait_loaded(page, vh.VIEWER)
    start = vh.shown(page, vh.VIEWER, "axial")
    vh.hover(page, vh.VIEWER, "axial")
    for _ in range(4):
        page.keyboard.press("ArrowDown")
    left_at = start - 4
    vh.wait_shown(page, vh.VIEWER, "axial", left_at)
    # the view tells the server a moment later (debounced): the address bar shows when the server has it
    page.wait_for_url(re.compile(rf"slice={left_at}(&|$)"), timeout=60_000)
    wait_idle(page)
    width = float(page.locator(".st-key-window_width input").input_value())
    center = float(page.locator(".st-key-window_center input").input_value())
    assert width > 1

    _go(page, "Segment & correct", "Segment & correct")
    page.wait_for_url(re.compile(f"case={case}"), timeout=60_000)
    assert _scan_box(page) == case, "the Segment page opens on the case picked in the Viewer"
    page.get_by_text(re.compile(f"^{case} · shape")).wait_for(timeout=60_000)
    vh.wait_loaded(page, vh.SEGMENT)
    assert vh.shown(page, vh.SEGMENT, "axial") == left_at, "Segment opens at the slice the Viewer was left at"
    page.screenshot(path=str(artifacts_dir / "one-case-segment.png"), full_page=True)

    _go(page, "Cases", "Cases")
    page.wait_for_url(re.compile(f"case={case}"), timeout=60_000)
    _go(page, "Models", "Models")
    page.wait_for_url(re.compile(f"case={case}"), timeout=60_000)
    _go(page, "Viewer", "Viewer")
    page.wait_for_url(re.compile(f"case={case}"), timeout=60_000)
    assert _scan_box(page) == case
    pixels = _axial_pixels(page)
    assert pixels.std() > 5, "the axial slice is blank after coming back (degenerate window)"
    assert vh.shown(page, vh.VIEWER, "axial") == left_at, "the Viewer comes back at the slice it was left at"
    assert float(page.locator(".st-key-window_width input").input_value()) == pytest.approx(width, rel=1e-3)
    assert float(page.locator(".st-key-window_center input").input_value()) == pytest.approx(center, rel=1e-3)
    page.screenshot(path=str(artifacts_dir / "one-case-viewer-back.png"), full_page=True)
    main = page.locator('[data-testid="stMain"]').inner_text()
    assert re.search(r"1\. Viewer.*2\. Segment & correct.*3\. Cases.*4\. Retrain.*5\. Models", main, re.DOTALL), \
        "the start page shows the workflow"


def test_volume_table_follows_a_box_edit(page, app_url: str, artifacts_dir: Path) -> None:
    if not (WEIGHTS_DIR / "hippocampus-unet-v1.onnx").is_file():
        pytest.skip("the shipped model is missing")
    case = "hippocampus_011"
    run_segmentation(page, app_url, case)
    # the model's output is on screen: both columns filled and equal (the grid may still show the labels before the run)
    before = _table(page, "Current (mL)", lambda t: all(r["Model (mL)"] and r["Current (mL)"] == r["Model (mL)"]
                                                        for r in t.values()))
    page.locator(".st-key-seg_label").get_by_text("posterior", exact=True).click()
    wait_idle(page)

    page.locator(".st-key-seg_tool").get_by_text("Box", exact=True).click()
    wait_idle(page)
    vh.wait_loaded(page, vh.SEGMENT)
    vh.wait_dragmode(page, vh.SEGMENT, "select")
    vh.cell(page, vh.SEGMENT, "axial").scroll_into_view_if_needed()
    box = vh.cell(page, vh.SEGMENT, "axial").locator(".nsewdrag").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.05, box["y"] + box["height"] * 0.05)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.2, steps=5)
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.4, steps=10)
    page.mouse.up()
    msg = page.get_by_text(re.compile(r"Box fill \w+( 2)? on axial \d+: \d+ voxels changed"))
    msg.wait_for(timeout=60_000)
    wait_idle(page)
    no_exception(page)
    changed = int(re.search(r"(\d+) voxels changed", msg.inner_text()).group(1))

    def grown_by(t: dict) -> float:
        return float(t["posterior"]["Current (mL)"]) - float(before["posterior"]["Current (mL)"])

    after = _table(page, "Current (mL)", lambda t: abs(grown_by(t) - changed / 1000) <= 0.0015)
    # hippocampus crops have 1 mm voxels: every changed voxel is 0.001 mL more posterior
    grown = grown_by(after)
    assert grown == pytest.approx(changed / 1000, abs=0.0015), (before, after, changed)
    assert after["posterior"]["Model (mL)"] == before["posterior"]["Model (mL)"]
    assert msg.inner_text().startswith("Box fill posterior on axial"), "messages name labels as the page does"
    page.locator('[data-testid="stDataFrame"]').first.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / "one-case-volume-table.png"))


def test_upload_names_the_scan_in_the_address_bar(page, browser, app_url: str, msd_dir: Path, tmp_path: Path,
                                                  artifacts_dir: Path) -> None:
    img = nib.load(str(msd_dir / "imagesTr" / "hippocampus_014.nii.gz"))
    arr = np.asarray(img.dataobj, dtype=np.float32)[::-1].copy()  # voxels no folder case has
    path = tmp_path / "e2e_upload.nii.gz"
    path.write_bytes(gzip.compress(nib.Nifti1Image(arr, img.affine).to_bytes()))

    page.goto(f"{app_url}/?case=hippocampus_001", wait_until="domcontentloaded")
    _axial_pixels(page)
    wait_idle(page)
    page.locator(".st-key-scan_upload input[type=file]").set_input_files(str(path))
    page.wait_for_url(re.compile(r"case=e2e_upload(&|$)"), timeout=120_000)
    wait_idle(page)
    no_exception(page)
    box = _scan_box(page)  # name, shape, date added and short id tell it from any other upload
    assert box.startswith("e2e_upload · ") and " · id " in box and box.endswith(" (uploaded)"), box
    page.get_by_text(re.compile(r"^e2e_upload · shape")).wait_for(timeout=60_000)
    page.screenshot(path=str(artifacts_dir / "one-case-upload.png"), full_page=True)

    # the address bar can be shared: another session opening it shows the uploaded scan
    other = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        other.goto(page.url, wait_until="domcontentloaded")
        pixels = _axial_pixels(other)
        wait_idle(other)
        no_exception(other)
        assert other.get_by_text(re.compile(r"^e2e_upload · shape")).count() == 1
        assert pixels.std() > 5
        assert other.locator('[data-testid="stAlert"]').filter(has_text="no case named").count() == 0
    finally:
        other.close()
