"""What every browser test does to a Streamlit page: wait until it has stopped running, check it raised nothing."""

from __future__ import annotations


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
