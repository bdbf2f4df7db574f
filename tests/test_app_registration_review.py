"""A person's say on a whole head's registration in the app (AppTest, issue 22): a refused head shows its
QC picture and *Segment anyway*; a segmented head's boxes can be moved; the versions saved say so."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the pages import `components` from the repository root
    sys.path.insert(0, str(ROOT))

from apptest_state import current_state, predictions  # noqa: E402

from segloop.store.database import Datastore  # noqa: E402
from segloop.store.label_versions import list_versions  # noqa: E402

SEGMENT = str(ROOT / "pages" / "segment.py")


def _head(realheads_dir: Path, invert: bool) -> bytes:
    img = nib.load(str(realheads_dir / "scans" / "nichart_IXI012.nii.gz"))
    data = np.asarray(img.dataobj, dtype=np.float32)
    if invert:  # T2-like contrast: registered right by mutual information, but its match is refused
        data = np.where(data > 0, data.max() - data, 0).astype(np.float32)
    return gzip.compress(nib.Nifti1Image(data, img.affine).to_bytes())


def _upload(name: str, data: bytes) -> AppTest:
    at = AppTest.from_file(SEGMENT, default_timeout=240)
    at.query_params["case"] = "hippocampus_001"
    at.run()
    at.session_state["_pending_upload"] = (name, data)
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_refused_head_shows_its_picture_and_a_person_may_segment_it_anyway(app_workspace: Path, realheads_dir: Path) -> None:
    at = _upload("odd contrast.nii.gz", _head(realheads_dir, invert=True))
    at.button(key="seg_run").click().run()
    assert not at.exception, at.exception
    assert any("could not find the hippocampi" in e.value for e in at.error)
    assert at.get("image"), "the QC picture is shown"
    assert not predictions(at)
    at.button(key="seg_accept_registration").click().run()
    assert not at.exception, at.exception
    (pred,) = predictions(at).values()
    assert pred.placed_by == "person" and pred.verdict == "warn"
    assert any("Boxes placed by a person" in c.value for c in at.caption)
    store = Datastore(workspace=app_workspace)
    (version,) = list_versions(store, store.scan_by_content(current_state(at).key).id)
    assert version.kind == "model" and "accepted although the check refused it" in version.note
    assert at.session_state["current_labels"].any()


def test_a_box_moved_by_a_person_segments_again_and_is_recorded(app_workspace: Path, realheads_dir: Path) -> None:
    at = _upload("head.nii.gz", _head(realheads_dir, invert=False))
    at.button(key="seg_run").click().run()
    assert not at.exception, at.exception
    (first,) = predictions(at).values()
    assert first.placed_by == "software" and first.verdict == "accept"
    at.number_input(key="seg_nudge_left_1").set_value(4.0)
    at.button(key="seg_move_boxes").click().run()
    assert not at.exception, at.exception
    assert len(predictions(at)) == 2
    moved = next(p for p in predictions(at).values() if p.placed_by == "person")
    left = next(s for s in moved.sides if s.side == "left")
    assert not np.allclose(left.corners, next(s for s in first.sides if s.side == "left").corners)
    store = Datastore(workspace=app_workspace)
    versions = list_versions(store, store.scan_by_content(current_state(at).key).id)
    assert [v.kind for v in versions] == ["model", "model"]
    assert "left box moved (+0, +4, +0) mm" in versions[-1].note and "placed by a person" not in versions[0].note
