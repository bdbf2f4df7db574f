"""End to end: a user opens a case in the Viewer and scrolls through axial slices with the keyboard.

Runs the real app (Streamlit server) in headless chromium against the real MSD hippocampus data.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from e2e.page_helpers import wait_idle

pytestmark = pytest.mark.e2e

CASE = "hippocampus_001"
#: The axial chart (key chart_axial); its first <image> is the rendered slice.
CHART = '.st-key-chart_axial [data-testid="stPlotlyChart"]'
#: Widgets with key=K sit in a container with CSS class st-key-K. The slider thumb is an ARIA slider
#: (Streamlit 1.67: a visually hidden <input type=range>; older versions: a div with role=slider).
AXIAL_SLIDER = ".st-key-slice_axial input[type=range], .st-key-slice_axial [role=slider]"
SLIDER_VALUE = "el => Number(el.getAttribute('aria-valuenow') ?? el.value)"
#: JS: the data URI shown by the axial chart's slice image (an SVG <image> with a PNG data URI href).
FIRST_IMAGE_HREF = """() => {
  const img = document.querySelector('.st-key-chart_axial [data-testid="stPlotlyChart"] .js-plotly-plot image');
  if (!img) return null;
  return img.getAttribute('href') || img.getAttributeNS('http://www.w3.org/1999/xlink', 'href');
}"""


def _decode_png(data_uri: str) -> np.ndarray:
    """The pixels of a `data:image/png;base64,...` URI as an array."""
    header, _, payload = data_uri.partition(",")
    assert header.startswith("data:image/png;base64"), f"not a PNG data URI: {header[:40]!r}"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("L"))


def test_viewer_shows_scan_and_axial_slider_changes_slice(page, app_url: str, artifacts_dir: Path) -> None:
    page.goto(f"{app_url}/?case={CASE}", wait_until="domcontentloaded")

    # The slice images are rendered by Plotly as SVG <image> elements with a PNG data URI.
    page.locator(f"{CHART} .js-plotly-plot image").first.wait_for(state="attached", timeout=120_000)
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]').first.inner_text()
    assert CASE in page.locator("body").inner_text(), f"the page does not name the case {CASE}"

    before = page.evaluate(FIRST_IMAGE_HREF)
    assert before, "no slice image in the axial chart"
    pixels = _decode_png(before)
    assert pixels.shape[0] >= 20 and pixels.shape[1] >= 20, f"slice image too small: {pixels.shape}"
    assert pixels.std() > 5, "the axial slice is blank (no scan visible)"
    page.screenshot(path=str(artifacts_dir / "viewer.png"), full_page=True)

    slider = page.locator(AXIAL_SLIDER)
    assert slider.count() == 1, "expected one slider keyed slice_axial"
    start = int(slider.evaluate(SLIDER_VALUE))
    steps = 3
    slider.focus()
    for _ in range(steps):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        f"""() => {{
          const s = document.querySelector('{AXIAL_SLIDER}');
          return s && ({SLIDER_VALUE})(s) === {start + steps};
        }}""",
        timeout=30_000,
    )

    # The rerun redraws the axial image with the new slice.
    page.wait_for_function(f"(before) => ({FIRST_IMAGE_HREF})() && ({FIRST_IMAGE_HREF})() !== before",
                           arg=before, timeout=60_000)
    wait_idle(page)
    after = page.evaluate(FIRST_IMAGE_HREF)
    after_pixels = _decode_png(after)
    assert after_pixels.shape == pixels.shape, "axial slices of one scan must have one size"
    assert np.abs(after_pixels.astype(int) - pixels.astype(int)).mean() > 0.5, "the slice image barely changed"
    assert page.locator('[data-testid="stException"]').count() == 0
    # The address bar now links to this view (case, plane and slice), so it can be shared.
    page.wait_for_url(lambda url: f"case={CASE}" in url and "plane=axial" in url and f"slice={start + steps}" in url,
                      timeout=30_000)
    page.screenshot(path=str(artifacts_dir / "viewer-after-scroll.png"), full_page=True)
