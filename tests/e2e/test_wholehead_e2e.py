"""End to end: a folder holding one whole-head T1 scan; the Segment page finds and segments both hippocampi.

The scan is a synthetic head (segloop.data.phantom: the MNI152 brain inside skull, scalp and neck, in a
tilted pose, 1 x 1 x 1.2 mm voxels stored in another axis order) written as `sub-01_T1w.nii.gz`.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from e2e import view_helpers as vh
from e2e.page_helpers import run_segmentation, save_correction, wait_idle
from e2e.test_volume_view_e2e import _changed_message, _drag, _pick
from segloop.config import WEIGHTS_DIR
from segloop.data.phantom import make_scan, random_scan_to_mni
from segloop.display import planes
from segloop.io.readers import load_scan
from segloop.store.database import Datastore
from segloop.store.label_versions import list_versions, load_version

pytestmark = pytest.mark.e2e



def test_whole_head_scan_both_sides_boxes_and_jump(browser, start_server, artifacts_dir: Path, tmp_path: Path) -> None:
    if not (WEIGHTS_DIR / "hippocampus-unet-v1.onnx").is_file():
        pytest.skip("the shipped model is missing")
    data = tmp_path / "bids"
    data.mkdir()
    rng = np.random.default_rng(11)
    array, affine = make_scan(random_scan_to_mni(rng), rng, spacing=(1.0, 1.0, 1.2))
    nib.save(nib.Nifti1Image(array, affine), str(data / "sub-01_T1w.nii.gz"))
    with start_server(data, tmp_path / "ws", artifacts_dir / "streamlit-wholehead.log") as base:
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            run_segmentation(page, base, "sub-01_T1w", done_text="Path: whole head")
            assert page.locator('[data-testid="stException"]').count() == 0
            body = page.locator('[data-testid="stMain"]').inner_text()
            assert "register to MNI152" in body and "segment left" in body and "eTIV" in body

            vh.wait_loaded(page, vh.SEGMENT)
            middle = {p: vh.shown(page, vh.SEGMENT, p) for p in planes.PLANES}
            page.locator(".st-key-seg_goto_left button").click()
            wait_idle(page)
            # the three planes jump to the left hippocampus (the server moves the view; the browser adopts it)
            page.wait_for_function(
                """(middle) => Object.entries(middle).some(([p, k]) => {
                     const c = document.querySelector(`.st-key-seg_view .vv-cell[data-plane=${p}]`);
                     return c && c.dataset.slice !== String(k) && c.dataset.drawn === c.dataset.slice; })""",
                arg=middle, timeout=60_000)
            vh.wait_loaded(page, vh.SEGMENT)
            moved = {p: vh.shown(page, vh.SEGMENT, p) for p in planes.PLANES}
            assert moved != middle, moved
            # the dashed box outline is drawn in all three planes once they sit on the left hippocampus
            for plane in planes.PLANES:
                sel = vh.cell_selector(vh.SEGMENT, plane)
                page.wait_for_function(
                    """(sel) => { const gd = document.querySelector(sel + ' .vv-plot');
                         return (gd.layout.shapes || []).some(s => s.type === 'path' && s.line && s.line.dash === 'dash')
                           && gd.querySelectorAll('.shapelayer path').length > 0; }""",
                    arg=sel, timeout=30_000)
                crosshair = page.evaluate(
                    "(sel) => (document.querySelector(sel + ' .vv-plot').layout.shapes || []).filter(s => s.type === 'line').length",
                    sel)
                assert crosshair == 2, f"the {plane} view does not mark the hippocampus centre with a crosshair"
            vh.cell(page, vh.SEGMENT, "axial").scroll_into_view_if_needed()
            page.screenshot(path=str(artifacts_dir / "wholehead-segment.png"))

            # scroll the whole head with the wheel, box the slice shown, save: the file changes exactly there
            key = vh.SEGMENT
            _pick(page, "seg_label", "posterior")
            _pick(page, "seg_tool", "Box")
            vh.wait_dragmode(page, key, "select")
            k0, r, c = page.evaluate("(sel) => { const vv = document.querySelector(sel).__vv; "
                                     "return vv.pixelOf('axial', vv.crosshair); }", ".st-key-seg_view .segloop-vv")
            vh.hover(page, key, "axial")
            vh.wheel(page, 2)
            k = k0 + 2
            vh.wait_shown(page, key, "axial", k)
            _drag(page, vh.to_screen(page, key, "axial", [(r - 3.4, c - 3.4), (r, c), (r + 3.4, c + 3.4)]))
            _changed_message(page, "Box fill", "axial", k)
            save_correction(page, "E2E whole head")

            store = Datastore(workspace=tmp_path / "ws")
            (record,) = store.scans_named("sub-01_T1w")
            versions = sorted(list_versions(store, record.id), key=lambda v: v.version)
            assert [v.kind for v in versions] == ["model", "correction"]
            scan = load_scan(data / "sub-01_T1w.nii.gz")
            model, saved = (load_version(store, v.id, scan) for v in versions)
            box = np.zeros(planes.slice_shape(scan.shape, "axial"), bool)
            box[r - 3:r + 4, c - 3:c + 4] = True
            changed = saved != model
            assert set(np.nonzero(changed)[2].tolist()) == {k}, "the edit left the slice it was drawn on"
            assert np.array_equal(planes.slice_view(changed, "axial", k), box & (planes.slice_view(model, "axial", k) != 2))
            assert (planes.slice_view(saved, "axial", k)[box] == 2).all()
        finally:
            page.close()
