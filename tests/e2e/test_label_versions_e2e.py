"""End to end: a correction saved on the Segment page is what the Viewer's version picker shows by default,
in this session and in a new one; the data folder's reference labels are one more, named choice.

Runs the real app (Streamlit server) in headless chromium against the real MSD hippocampus data and the
shipped model.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from e2e.page_helpers import no_exception, run_segmentation, save_correction, wait_idle
from segloop.config import WEIGHTS_DIR

pytestmark = pytest.mark.e2e

CASE = "hippocampus_023"  # no other browser test touches it: its versions are this test's own
PICKER = ".st-key-label_source input"


def _go(page, title: str, heading: str) -> None:
    """Click a page in the sidebar navigation and wait for it."""
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=heading).first.wait_for(timeout=120_000)
    wait_idle(page)
    no_exception(page)


def _picked(page) -> str:
    page.locator(PICKER).wait_for(state="attached", timeout=120_000)
    wait_idle(page)
    return page.locator(PICKER).input_value()


def test_saved_correction_is_the_viewers_default(page, browser, app_url: str, artifacts_dir: Path) -> None:
    if not (WEIGHTS_DIR / "hippocampus-unet-v1.onnx").is_file():
        pytest.skip("the shipped model is missing")
    run_segmentation(page, app_url, CASE)
    no_exception(page)
    model_version = int(re.search(r"saved as version (\d+)", page.get_by_text("saved as version").inner_text()).group(1))

    page.locator(".st-key-seg_grow button").click()  # one edit: grow the first label by a voxel
    page.get_by_text(re.compile(r"Unsaved changes: \d+ voxels")).wait_for(timeout=60_000)
    saved = save_correction(page, "E2E reviewer")
    version = int(re.search(r"Saved as version (\d+)", saved.inner_text()).group(1))
    assert version > model_version

    _go(page, "Viewer", "Viewer")
    assert _picked(page) == f"v{version} · correction · E2E reviewer (default)"
    page.screenshot(path=str(artifacts_dir / "label-versions-viewer.png"), full_page=True)

    # another session opening the case starts on the same version, and offers the others by name
    other = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
    try:
        other.goto(f"{app_url}/?case={CASE}", wait_until="domcontentloaded")
        assert _picked(other) == f"v{version} · correction · E2E reviewer (default)"
        no_exception(other)
        other.locator(PICKER).click()
        options = other.get_by_role("option")
        options.first.wait_for(timeout=30_000)
        texts = [t.strip() for t in options.all_inner_texts()]
        assert f"v{model_version} · model output" in texts, texts
        assert "Reference labels from the data folder" in texts, texts
        other.get_by_role("option", name="Reference labels from the data folder").click()
        wait_idle(other)
        no_exception(other)
        assert other.locator(PICKER).input_value() == "Reference labels from the data folder"
    finally:
        other.context.close()
