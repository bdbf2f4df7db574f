"""End to end: a deep link to a page, opened first on a freshly started server, gets the whole app.

Streamlit's old pages/-folder mode would otherwise run the page file without app.py (no navigation,
no SegLoop sidebar) until someone opened the root URL once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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
            page.screenshot(path=str(artifacts_dir / "deep-link-segment.png"))
        finally:
            page.close()
