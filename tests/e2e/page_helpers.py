"""What every browser test does to a Streamlit page: wait until it has stopped running, check it raised
nothing, and the Segment page's two common steps (run the model, save a correction)."""

from __future__ import annotations

import re


def wait_idle(page, timeout_ms: int = 120_000) -> None:
    """Wait until Streamlit's status widget no longer says 'Running' (the rerun has finished)."""
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stStatusWidget"]')
                  || !document.querySelector('[data-testid="stStatusWidget"]').innerText.includes('Running')""",
        timeout=timeout_ms,
    )


def no_exception(page) -> None:
    """Fail with the exception's text when the page shows one."""
    exc = page.locator('[data-testid="stException"]')
    assert exc.count() == 0, exc.first.inner_text()


def run_segmentation(page, base_url: str, case: str, done_text: str = "Execution provider") -> None:
    """Open the Segment page on `case` and run the model once; returns when `done_text`, part of its result,
    is on the page."""
    page.goto(f"{base_url}/segment?case={case}", wait_until="domcontentloaded")
    run = page.locator(".st-key-seg_run button")
    run.wait_for(state="visible", timeout=180_000)
    wait_idle(page)
    run.click()
    page.get_by_text(done_text).wait_for(timeout=180_000)
    wait_idle(page)


def save_correction(page, author: str):
    """Type the author's name and save on the Segment page (local mode); returns the "Saved as version" text."""
    page.locator(".st-key-seg_author input").fill(author)
    page.locator(".st-key-seg_author input").press("Enter")
    # The status widget shows "Running" only a moment after a rerun starts: wait twice, so the click below
    # does not land in the rerun the name started (or in one the view's debounced state report started).
    wait_idle(page)
    page.wait_for_timeout(700)
    wait_idle(page)
    page.locator(".st-key-seg_save button").click()
    saved = page.get_by_text(re.compile(r"^Saved as version \d+"))
    try:
        saved.wait_for(timeout=60_000)
    except Exception as exc:  # say what the page says instead of only "timeout"
        said = page.locator('[data-testid="stAlert"], [data-testid="stCaptionContainer"]').all_inner_texts()
        raise AssertionError(f"no 'Saved as version' after Save; the page says: {said}") from exc
    wait_idle(page)
    no_exception(page)
    return saved
