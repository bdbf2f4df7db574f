"""Scans are who their voxels say they are, in the app too (AppTest, issue 21).

Two uploads with the same file name and shape but other voxels are two scans: the second never shows
the first one's prediction, its saves hold its own labels, the two have names a person can tell apart,
and their links open each its own scan. An old link by a name several scans share says so and offers them.
"""

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

from segloop.io.readers import load_scan_bytes  # noqa: E402
from segloop.io.volume import content_id  # noqa: E402
from segloop.store.database import Datastore  # noqa: E402
from segloop.store.label_versions import list_versions, load_version  # noqa: E402

APP = str(ROOT / "app.py")
SEGMENT = str(ROOT / "pages" / "segment.py")


def two_scans_one_name(msd_dir: Path) -> tuple[bytes, bytes]:
    """`a/T1w.nii.gz` and `b/T1w.nii.gz`: one crop and the same crop mirrored, same shape, other voxels."""
    img = nib.load(str(msd_dir / "imagesTr" / "hippocampus_001.nii.gz"))
    arr = np.asarray(img.dataobj, dtype=np.float32)
    a = nib.Nifti1Image(arr, img.affine)
    b = nib.Nifti1Image(np.ascontiguousarray(arr[::-1]), img.affine)
    return gzip.compress(a.to_bytes()), gzip.compress(b.to_bytes())


def _blank(labels) -> bool:
    """No labels on screen (none yet, or all background)."""
    return labels is None or not labels.any()


def _upload(at: AppTest, name: str, data: bytes) -> None:
    at.session_state["_pending_upload"] = (name, data)  # what the uploader's callback leaves
    at.run()
    assert not at.exception, at.exception


def _page(**params: str) -> AppTest:
    at = AppTest.from_file(SEGMENT, default_timeout=180)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_second_upload_of_the_same_name_is_another_scan_with_its_own_work(app_workspace: Path, msd_dir: Path) -> None:
    data_a, data_b = two_scans_one_name(msd_dir)
    key_a, key_b = (content_id(load_scan_bytes("T1w.nii.gz", d)) for d in (data_a, data_b))
    at = _page(case="hippocampus_008")

    # 1. upload a/T1w.nii.gz and segment it
    _upload(at, "T1w.nii.gz", data_a)
    assert current_state(at).key == key_a and at.session_state["current_case"] == "T1w"
    at.button(key="seg_run").click().run()
    assert not at.exception, at.exception
    pred_a = at.session_state["current_labels"].copy()
    assert pred_a.any() and len(predictions(at)) == 1
    link_a = dict(at.query_params)

    # 2. upload b/T1w.nii.gz: same file name and shape, other voxels
    _upload(at, "T1w.nii.gz", data_b)
    state = current_state(at)
    assert state.key == key_b and state.name == "T1w (2)"  # a name a person can tell apart
    # 3. no prediction of its own yet: the Run button, not the first upload's output
    assert "seg_run" in [b.key for b in at.button]
    assert not predictions(at) and not any("saved as version" in c.value for c in at.caption)
    assert _blank(at.session_state["current_labels"])
    assert at.session_state["current_volume"].shape == pred_a.shape  # same shape: only identity tells them apart

    # 4. save: the version belongs to scan B and holds B's labels (none drawn: all background)
    at.text_input(key="seg_author").input("ann").run()
    at.button(key="seg_save").click().run()
    assert not at.exception, at.exception
    store = Datastore(workspace=app_workspace)
    scan_a, scan_b = store.scan_by_content(key_a), store.scan_by_content(key_b)
    assert (scan_a.name, scan_b.name) == ("T1w", "T1w (2)")
    (v_b,) = list_versions(store, scan_b.id)
    vol_b = at.session_state["current_volume"]
    saved = load_version(store, v_b.id, vol_b)
    assert v_b.kind == "correction" and v_b.parent_version_id is None and not saved.any()
    assert [v.kind for v in list_versions(store, scan_a.id)] == ["model"]  # A's output stayed A's

    # 5. the two links differ, and each opens its own scan in another session
    link_b = dict(at.query_params)
    assert link_a["case"] == "T1w" and link_b["case"] == "T1w (2)" and link_a["scan"] != link_b["scan"]
    assert key_a.startswith(link_a["scan"]) and key_b.startswith(link_b["scan"])
    other = _page(**link_a)
    assert current_state(other).key == key_a
    np.testing.assert_array_equal(other.session_state["current_labels"], pred_a)  # A's model version
    other = _page(**link_b)
    assert current_state(other).key == key_b and _blank(other.session_state["current_labels"])

    # 6. back to A in the first session: its prediction is still its own, B's save did not touch it
    at.selectbox(key="case_select").set_value("T1w").run()
    assert not at.exception, at.exception
    assert current_state(at).key == key_a and "seg_run" not in [b.key for b in at.button]
    np.testing.assert_array_equal(at.session_state["current_labels"], pred_a)


def test_the_same_voxels_uploaded_under_another_name_are_the_same_scan(app_workspace: Path, msd_dir: Path) -> None:
    data_a, _ = two_scans_one_name(msd_dir)
    at = _page(case="hippocampus_003")
    _upload(at, "T1w.nii.gz", data_a)
    at.button(key="seg_run").click().run()
    assert not at.exception, at.exception
    pred = at.session_state["current_labels"].copy()
    _upload(at, "renamed copy.nii.gz", data_a)
    assert at.session_state["current_case"] == "T1w"  # the name the workspace knows these voxels by
    assert "seg_run" not in [b.key for b in at.button]  # its own prediction, found by identity
    np.testing.assert_array_equal(at.session_state["current_labels"], pred)
    assert sorted(s.name for s in Datastore(workspace=app_workspace).scans()) == ["T1w", "hippocampus_003"]  # no third scan


def test_an_old_link_by_a_shared_name_says_so_and_offers_the_scans(app_workspace: Path, msd_dir: Path) -> None:
    """A workspace from before unique names holds two scans called T1w: `?case=T1w` must not pick one."""
    import sqlite3

    data_a, data_b = two_scans_one_name(msd_dir)
    at = _page(case="hippocampus_008")
    _upload(at, "T1w.nii.gz", data_a)
    _upload(at, "T1w.nii.gz", data_b)
    key_b = current_state(at).key
    with sqlite3.connect(app_workspace / "segloop.db") as conn:  # as an older SegLoop left it: two scans, one name
        conn.execute("DROP INDEX scans_unique_name")
        conn.execute("UPDATE scans SET name = 'T1w' WHERE source = 'uploaded'")

    other = _page(case="T1w")
    assert current_state(other).source == "data folder"  # neither T1w was guessed
    (warning,) = [w.value for w in other.warning if "scans are called" in w.value]
    assert "2 scans are called 'T1w'" in warning
    buttons = [b for b in other.button if b.key.startswith("case_candidate_")]
    assert len(buttons) == 2 and all("id " in b.label for b in buttons) and buttons[0].label != buttons[1].label
    pick = next(b for b in buttons if key_b[:12] in b.label)
    pick.click().run()
    assert not other.exception, other.exception
    assert current_state(other).key == key_b and not any("scans are called" in w.value for w in other.warning)


def test_a_link_whose_scan_id_matches_nothing_says_so_and_changes_nothing(app_workspace: Path) -> None:
    at = _page(case="hippocampus_008")
    key = current_state(at).key
    at.query_params.clear()  # a link naming hippocampus_001 with the id of other voxels (its file changed)
    at.query_params["case"], at.query_params["scan"] = "hippocampus_001", "0123456789ab"
    at.run()
    assert not at.exception, at.exception
    assert any("0123456789ab" in e.value and "not the scan this link means" in e.value for e in at.error)
    assert current_state(at).key == key and at.query_params["case"] == "hippocampus_008"
