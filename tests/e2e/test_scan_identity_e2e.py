"""End to end: two uploads with one file name are two scans, in the browser too (issue 21).

A user on the Segment page uploads `T1w.nii.gz`, segments it, then uploads another `T1w.nii.gz` of the
same shape with other voxels. The second upload is its own scan: it gets a name a person can tell apart
("T1w (2)") and a link of its own, shows no prediction of the first one, and its save holds its own
labels. The first upload's link still opens the first upload with its model output. The AppTest version
of this sequence is tests/test_app_scan_identity.py.

Runs the real app (Streamlit server) in headless chromium against the real MSD hippocampus data.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import nibabel as nib
import numpy as np
import pytest

from e2e import view_helpers as vh
from e2e.page_helpers import no_exception, save_correction, wait_idle
from e2e.test_one_case_e2e import _scan_box, _table
from segloop.config import WEIGHTS_DIR
from segloop.display import planes
from segloop.io.readers import load_scan
from segloop.io.volume import content_id
from segloop.store.database import Datastore
from segloop.store.label_versions import list_versions, load_version
from segloop.store.scan_links import short_id

pytestmark = pytest.mark.e2e

SOURCE_CASE = "hippocampus_017"  # no other browser test opens it
UPLOAD = ".st-key-scan_upload input[type=file]"
RUN = ".st-key-seg_run button"


def _write_two_scans_one_name(msd_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """`a/T1w.nii.gz` and `b/T1w.nii.gz`: same file name and shape, other voxels.

    Like `two_scans_one_name` of the AppTest, but A is a folder case mirrored left-right rather than the
    case itself: this server is shared by the whole browser suite, and other tests segment folder cases on
    it, so an upload of a folder case's own voxels would be that (already known) scan, not a new "T1w".
    B is A flipped front to back.
    """
    img = nib.load(str(msd_dir / "imagesTr" / f"{SOURCE_CASE}.nii.gz"))
    a = np.ascontiguousarray(np.asarray(img.dataobj, dtype=np.float32)[::-1])
    b = np.ascontiguousarray(a[:, ::-1])
    paths = []
    for folder, arr in (("a", a), ("b", b)):
        path = tmp_path / folder / "T1w.nii.gz"
        path.parent.mkdir(parents=True)
        path.write_bytes(gzip.compress(nib.Nifti1Image(arr, img.affine).to_bytes()))
        paths.append(path)
    return paths[0], paths[1]


def _link(url: str) -> dict[str, str]:
    """The address bar's query parameters (one value each)."""
    return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}


def _names(box: str, name: str) -> bool:
    """Whether the Scan box's text names the upload `name` as "T1w · <shape> · added <date> · id <short id>
    (uploaded)": enough to tell two uploads of one file name apart."""
    return box.startswith(f"{name} · ") and " · id " in box and box.endswith(" (uploaded)")


def _upload(page, path: Path, name: str) -> dict[str, str]:
    """Upload `path` through the Scan box's file input; returns the link once the address bar names `name`."""
    page.locator(UPLOAD).set_input_files(str(path))
    page.wait_for_url(lambda url: _link(url).get("case") == name, timeout=120_000)
    wait_idle(page)
    no_exception(page)
    page.get_by_text(re.compile(rf"^{re.escape(name)} · shape")).wait_for(timeout=60_000)
    vh.wait_loaded(page, vh.SEGMENT)
    return _link(page.url)


def test_a_second_upload_of_the_same_name_is_another_scan(page, browser, app_url: str, app_workspace: Path,
                                                          msd_dir: Path, tmp_path: Path, artifacts_dir: Path) -> None:
    if not (WEIGHTS_DIR / "hippocampus-unet-v1.onnx").is_file():
        pytest.skip("the shipped model is missing")
    path_a, path_b = _write_two_scans_one_name(msd_dir, tmp_path)
    vol_a, vol_b = load_scan(path_a), load_scan(path_b)
    key_a, key_b = content_id(vol_a), content_id(vol_b)
    assert key_a != key_b and vol_a.shape == vol_b.shape  # only identity tells them apart

    page.goto(f"{app_url}/segment", wait_until="domcontentloaded")
    page.locator(RUN).wait_for(state="visible", timeout=180_000)
    wait_idle(page)

    # 1. upload a/T1w.nii.gz and segment it (the Run button of the page it was uploaded on: no reload)
    link_a = _upload(page, path_a, "T1w")
    assert link_a["scan"] == short_id(key_a), link_a
    assert _names(_scan_box(page), "T1w"), _scan_box(page)
    page.locator(RUN).click()
    page.get_by_text("Execution provider").wait_for(timeout=180_000)
    wait_idle(page)
    no_exception(page)
    page.get_by_text(re.compile(r"saved as version 1$")).wait_for(timeout=60_000)
    url_a = page.url
    assert _link(url_a) == link_a
    box = _scan_box(page)
    assert box.startswith("T1w · ") and f"id {short_id(key_a)}" in box, box  # listed with what tells it apart
    page.screenshot(path=str(artifacts_dir / "scan-identity-a-segmented.png"), full_page=True)

    # 2. upload b/T1w.nii.gz: same file name and shape, other voxels
    link_b = _upload(page, path_b, "T1w (2)")
    assert link_b["scan"] == short_id(key_b) and link_b["scan"] != link_a["scan"], (link_a, link_b)
    assert _names(_scan_box(page), "T1w (2)"), _scan_box(page)
    # 3. no prediction of its own yet: the Run button, none of the first upload's output
    assert page.locator(RUN).is_visible() and page.locator(RUN).inner_text().strip().endswith("Run segmentation")
    assert page.get_by_text("saved as version").count() == 0
    assert page.get_by_text("Execution provider").count() == 0
    page.screenshot(path=str(artifacts_dir / "scan-identity-b-uploaded.png"), full_page=True)
    nothing_saved = page.get_by_text("No saved versions of this scan yet.")
    nothing_saved.wait_for(timeout=30_000)
    nothing_saved.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / "scan-identity-b-uploaded-save.png"))

    # 4. save: the version belongs to scan B and holds B's labels (nothing drawn: all background)
    saved = save_correction(page, "E2E scan identity")
    said = saved.inner_text()
    assert said.startswith("Saved as version 1.") and "no model version to compare" in said, said  # not A's
    assert _link(page.url)["scan"] == link_b["scan"]
    box = _scan_box(page)
    assert box.startswith("T1w (2) · ") and f"id {short_id(key_b)}" in box, box
    page.screenshot(path=str(artifacts_dir / "scan-identity-b-saved.png"), full_page=True)
    store = Datastore(workspace=app_workspace)
    scan_a, scan_b = store.scan_by_content(key_a), store.scan_by_content(key_b)
    assert (scan_a.name, scan_b.name) == ("T1w", "T1w (2)")
    (v_b,) = list_versions(store, scan_b.id)
    assert v_b.kind == "correction" and v_b.author == "E2E scan identity" and v_b.parent_version_id is None
    labels_b = load_version(store, v_b.id, vol_b)
    assert labels_b.shape == vol_b.shape and not labels_b.any()
    versions_a = list_versions(store, scan_a.id)
    assert [v.kind for v in versions_a] == ["model"]  # A's output stayed A's
    model_a = load_version(store, versions_a[0].id, vol_a)
    assert model_a.any()

    # 5. A's link, opened in another session, shows A with its model output as the labels
    other = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        other.goto(url_a, wait_until="domcontentloaded")
        other.get_by_text(re.compile(r"^T1w · shape")).wait_for(timeout=120_000)
        vh.wait_loaded(other, vh.SEGMENT)
        wait_idle(other)
        no_exception(other)
        box = _scan_box(other)
        assert box.startswith("T1w · ") and f"id {short_id(key_a)}" in box, box
        assert _link(other.url)["scan"] == link_a["scan"]
        other.get_by_text("No unsaved changes (same as version 1 (model)).").wait_for(timeout=30_000)
        volumes = _table(other, "Current (mL)", lambda t: len(t) == 2 and all(float(r["Current (mL)"]) > 0
                                                                                for r in t.values()))
        assert len(volumes) == 2 and all(float(r["Current (mL)"]) > 0 for r in volumes.values()), volumes
        for p in planes.PLANES:  # the labels on screen are A's model version
            k = vh.shown(other, vh.SEGMENT, p)
            np.testing.assert_array_equal(vh.shown_labels(other, vh.SEGMENT, p), planes.slice_view(model_a, p, k),
                                          err_msg=f"{p} slice {k}")
        assert any(vh.shown_labels(other, vh.SEGMENT, p).any() for p in planes.PLANES), "no labels on screen"
        other.screenshot(path=str(artifacts_dir / "scan-identity-a-link.png"), full_page=True)
        other.locator('[data-testid="stDataFrame"]').first.scroll_into_view_if_needed()
        other.screenshot(path=str(artifacts_dir / "scan-identity-a-link-details.png"))
    finally:
        other.close()
