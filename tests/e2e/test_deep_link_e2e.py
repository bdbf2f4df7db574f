"""End to end: deep links. A link to a page, opened first on a freshly started server, gets the whole app
(Streamlit's old pages/-folder mode would otherwise run the page file without app.py: no navigation,
no SegLoop sidebar, until someone opened the root URL once); a link naming a plane and slice opens there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from e2e import view_helpers as vh
from e2e.page_helpers import no_exception, wait_idle
from segloop.io.readers import load_scan

pytestmark = pytest.mark.e2e


def test_deep_link_to_segment_page_on_fresh_server(browser, start_server, msd_dir: Path, artifacts_dir: Path, tmp_path: Path) -> None:
    with start_server(msd_dir, tmp_path / "ws", artifacts_dir / "streamlit-deeplink.log") as base:
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            page.goto(f"{base}/segment?case=hippocampus_001", wait_until="domcontentloaded")
            page.get_by_role("heading", name="Segment & correct").wait_for(timeout=120_000)
            nav = page.locator('[data-testid="stSidebarNav"]')
            nav.wait_for(timeout=60_000)
            links = nav.inner_text()
            assert "Viewer" in links and "Segment & correct" in links and "Models" in links
            assert "app" not in [ln.strip() for ln in links.splitlines()], "old pages/-folder navigation shown"
            assert "3D segmentation with a human in the loop" in page.locator('[data-testid="stSidebar"]').inner_text()
            assert "case=hippocampus_001" in page.url
            vh.wait_loaded(page, vh.SEGMENT)  # the page works, not only its frame: the scan is on screen
            page.screenshot(path=str(artifacts_dir / "deep-link-segment.png"))
        finally:
            page.close()


def test_deep_link_opens_the_slice_it_names(page, app_url: str, msd_dir: Path, artifacts_dir: Path) -> None:
    """`?plane=coronal&slice=12` shows coronal slice 12 (0-based, as the address bar writes it)."""
    page.goto(f"{app_url}/?case=hippocampus_001&plane=coronal&slice=12", wait_until="domcontentloaded")
    vh.wait_loaded(page, vh.VIEWER)
    wait_idle(page)
    no_exception(page)
    assert vh.shown(page, vh.VIEWER, "coronal") == 12
    assert vh.cell(page, vh.VIEWER, "coronal").locator(".vv-title").inner_text() == "Coronal 13 / 51"
    center, width = vh.window(page)
    array = load_scan(msd_dir / "imagesTr" / "hippocampus_001.nii.gz").array
    shown = vh.slice_pixels(page, vh.VIEWER, "coronal")
    assert np.abs(shown.astype(int) - vh.expected_pixels(array, "coronal", 12, center, width).astype(int)).max() <= 1
    assert vh.shown(page, vh.VIEWER, "axial") == 35 // 2, "the other planes open on their middle slices"
    page.screenshot(path=str(artifacts_dir / "deep-link-slice.png"))
