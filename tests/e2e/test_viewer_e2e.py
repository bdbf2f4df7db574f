"""End to end: a user opens a case in the Viewer and scrolls through axial slices with the keyboard.

Runs the real app (Streamlit server) in headless chromium against the real MSD hippocampus data. The
slices are drawn by the volume view (components/volume_view.js) in the browser; the address bar follows
what the user looks at, so the view can be shared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from e2e import view_helpers as vh
from e2e.page_helpers import no_exception, wait_idle

pytestmark = pytest.mark.e2e

CASE = "hippocampus_001"


def test_viewer_shows_scan_and_keys_change_the_axial_slice(page, app_url: str, artifacts_dir: Path) -> None:
    page.goto(f"{app_url}/?case={CASE}", wait_until="domcontentloaded")
    vh.wait_loaded(page, vh.VIEWER)
    wait_idle(page)
    no_exception(page)
    assert CASE in page.locator("body").inner_text(), f"the page does not name the case {CASE}"

    pixels = vh.slice_pixels(page, vh.VIEWER, "axial")
    assert pixels.shape[0] >= 20 and pixels.shape[1] >= 20, f"slice image too small: {pixels.shape}"
    assert pixels.std() > 5, "the axial slice is blank (no scan visible)"
    page.screenshot(path=str(artifacts_dir / "viewer.png"), full_page=True)

    start = vh.shown(page, vh.VIEWER, "axial")
    steps = 3
    vh.hover(page, vh.VIEWER, "axial")
    for _ in range(steps):
        page.keyboard.press("ArrowUp")
    vh.wait_shown(page, vh.VIEWER, "axial", start + steps)
    after = vh.slice_pixels(page, vh.VIEWER, "axial")
    assert after.shape == pixels.shape, "axial slices of one scan must have one size"
    assert np.abs(after.astype(int) - pixels.astype(int)).mean() > 0.5, "the slice image barely changed"
    # the slider under the view follows
    assert int(vh.cell(page, vh.VIEWER, "axial").locator("input[type=range]").input_value()) == start + steps

    # The address bar now links to this view (case, plane and slice), so it can be shared.
    page.wait_for_url(lambda url: f"case={CASE}" in url and "plane=axial" in url and f"slice={start + steps}" in url,
                      timeout=30_000)
    wait_idle(page)
    no_exception(page)
    page.screenshot(path=str(artifacts_dir / "viewer-after-scroll.png"), full_page=True)
