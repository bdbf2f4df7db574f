"""End to end: a user starts a short real fine-tuning run on the Retrain page and watches it progress.

The run is a real background job on the shipped model (2 original MSD cases, 2 epochs); once its
progress and curves are on screen the test cancels it, so CI stays fast and no job outlives the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.page_helpers import wait_idle
from segloop.config import WEIGHTS_DIR

pytestmark = pytest.mark.e2e



def _set_number(page, key: str, value: int) -> None:
    box = page.locator(f".st-key-{key} input")
    box.fill(str(value))
    box.press("Enter")
    wait_idle(page)


def test_start_a_run_from_the_browser_and_see_progress(page, app_url: str, artifacts_dir: Path) -> None:
    if not (WEIGHTS_DIR / "hippocampus-unet-v1.pt").is_file():
        pytest.skip("shipped checkpoint weights/hippocampus-unet-v1.pt not present")
    page.goto(f"{app_url}/retrain", wait_until="domcontentloaded")
    # the shipped model is v1 and active; its card's 44 validation cases are the fixed validation set
    page.get_by_text("Fixed validation set: 44 cases").wait_for(timeout=120_000)
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0

    page.locator(".st-key-use_original label").click()  # no corrections yet: train on 2 original cases
    wait_idle(page)
    _set_number(page, "n_original", 2)
    _set_number(page, "epochs", 30)  # long enough to still be running when the second start is tried
    page.get_by_text("More settings").click()
    _set_number(page, "val_every", 1)
    _set_number(page, "batch_size", 2)
    page.locator(".st-key-start_btn button").click()
    page.get_by_text("started in the background").wait_for(timeout=60_000)

    # the live fragment polls the job: progress bar with the epoch counter, then the loss/Dice curves
    progress = page.locator('[data-testid="stProgress"]')
    progress.first.wait_for(timeout=180_000)
    page.wait_for_function(
        """() => { const p = document.querySelector('[data-testid="stProgress"]');
                   return p && /Epoch [0-9]+ \\/ 30/.test(p.innerText); }""", timeout=240_000)
    page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').first.wait_for(timeout=120_000)
    assert "Run #1" in page.locator("body").inner_text()
    page.get_by_text("Latest run").scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts_dir / "retrain.png"), full_page=True)

    # a second start is refused while the run is going
    page.locator(".st-key-start_btn button").click()
    page.get_by_text("wait for it or cancel it").wait_for(timeout=60_000)

    # cancel, so no job outlives the test
    page.locator('.st-key-cancel_1 button').click()
    page.wait_for_function("""() => /was cancelled/.test(document.body.innerText)""", timeout=180_000)
    assert page.locator('[data-testid="stException"]').count() == 0
