"""The labels a user expects (AppTest): every page opens a case on its latest saved labels, the Viewer's
picker shows another version or the data folder's reference labels, unsaved edits are never replaced
silently, and unsaved work kept aside is bounded and warned about.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the pages import `components` from the repository root
    sys.path.insert(0, str(ROOT))

from apptest_state import current_state  # noqa: E402

from segloop.io.readers import load_label, load_scan  # noqa: E402
from segloop.store.database import Datastore  # noqa: E402
from segloop.store.label_versions import approve, save_label_version  # noqa: E402
from segloop.store.predictions import ensure_scan  # noqa: E402

APP = str(ROOT / "app.py")
CASE = "hippocampus_019"
PICK = "label_source"


@pytest.fixture()
def env(msd_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("SEGLOOP_DATA_DIR", str(msd_dir))
    monkeypatch.setenv("SEGLOOP_WORKSPACE", str(tmp_path / "ws"))
    return tmp_path / "ws"


def _scan(msd_dir: Path, case: str = CASE):
    vol = load_scan(msd_dir / "imagesTr" / f"{case}.nii.gz")
    ref = load_label(msd_dir / "labelsTr" / f"{case}.nii.gz", reference=vol).array
    return vol, ref


def _save(ws: Path, msd_dir: Path, kinds: list[str], case: str = CASE) -> list:
    """Save versions of `case` (each a different label map) as another session or the CLI would."""
    vol, ref = _scan(msd_dir, case)
    store = Datastore(workspace=ws)
    scan = ensure_scan(store, case, vol, "data folder")
    out, parent = [], None
    for i, kind in enumerate(kinds):
        labels = ref.copy()
        labels[: i + 1] = 0  # each version differs: fewer voxels
        v = save_label_version(store, scan.id, labels, vol, kind=kind, author="model" if kind == "model" else "Ann",
                               parent_version_id=parent)
        out.append(v)
        parent = v.id
    return out


def _app(page: str = "pages/viewer.py", **params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    if page != "pages/viewer.py":
        _nav(at, page)
    return at


def _nav(at: AppTest, page: str) -> AppTest:
    at.query_params.clear()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _title(at: AppTest) -> str:
    box = at.selectbox(key=PICK)
    return box.format_func(box.value)


def _load(ws: Path, msd_dir: Path, version) -> np.ndarray:
    vol, _ = _scan(msd_dir)
    return load_label(version.path, reference=vol).array


def test_pages_open_on_the_default_version_and_the_picker_shows_others(env: Path, msd_dir: Path) -> None:
    model, corr, _later_model = _save(env, msd_dir, ["model", "correction", "model"])
    at = _app(case=CASE)
    # the latest correction wins over a later model output
    assert _title(at) == f"v{corr.version} · correction · Ann (default)"
    assert np.array_equal(at.session_state["current_labels"], _load(env, msd_dir, corr))
    options = list(at.selectbox(key=PICK).options)  # as the box shows them
    assert options == ["v3 · model output", "v2 · correction · Ann (default)", "v1 · model output",
                       "Reference labels from the data folder"]

    # the Segment page opens on the same labels, and saving descends from that version
    _nav(at, "pages/segment.py")
    assert np.array_equal(at.session_state["current_labels"], _load(env, msd_dir, corr))
    assert any(f"same as version {corr.version} (correction)" in c.value for c in at.caption)

    # the reference labels: a clearly named choice, shown on every page once chosen
    _nav(at, "pages/viewer.py")
    at.selectbox(key=PICK).set_value("reference").run()
    assert not at.exception, at.exception
    _, ref = _scan(msd_dir)
    assert np.array_equal(at.session_state["current_labels"], ref)
    assert _title(at) == "Reference labels from the data folder"
    _nav(at, "pages/segment.py")
    assert np.array_equal(at.session_state["current_labels"], ref)
    _nav(at, "pages/viewer.py")
    assert _title(at) == "Reference labels from the data folder"

    # an older model output
    at.selectbox(key=PICK).set_value(f"version:{model.id}").run()
    assert np.array_equal(at.session_state["current_labels"], _load(env, msd_dir, model))
    label_table = next(df.value for df in at.dataframe if "Volume (mL)" in df.value.columns)
    assert label_table["Voxels"].sum() == int(np.count_nonzero(_load(env, msd_dir, model)))


def test_approved_wins_and_reference_is_the_default_only_without_versions(env: Path, msd_dir: Path) -> None:
    at = _app(case=CASE)
    assert _title(at) == "Reference labels from the data folder (default)"
    _, ref = _scan(msd_dir)
    assert np.array_equal(at.session_state["current_labels"], ref)

    _model, corr = _save(env, msd_dir, ["model", "correction"])
    approved = approve(Datastore(workspace=env), corr.id, author="Rev")
    _save(env, msd_dir, ["correction"])  # a newer correction, not approved yet
    other = _app(case=CASE)  # another session opening the case
    assert _title(other) == f"v{approved.version} · approved · Rev (default)"
    assert np.array_equal(other.session_state["current_labels"], _load(env, msd_dir, approved))


def _edit_on_segment(at: AppTest) -> int:
    """Grow the anterior label by a voxel on the Segment page; returns the voxels changed."""
    before = at.session_state["current_labels"].copy()
    at.button(key="seg_grow").click().run()
    assert not at.exception, at.exception
    changed = int(np.count_nonzero(at.session_state["current_labels"] != before))
    assert changed > 0
    return changed


def test_unsaved_edits_are_not_replaced_without_a_second_click(env: Path, msd_dir: Path) -> None:
    model, corr = _save(env, msd_dir, ["model", "correction"])
    at = _app("pages/segment.py", case=CASE)
    changed = _edit_on_segment(at)
    edited = at.session_state["current_labels"].copy()

    _nav(at, "pages/viewer.py")
    assert np.array_equal(at.session_state["current_labels"], edited)  # the Viewer shows the edits
    assert any(f"{changed} unsaved edited voxels" in c.value for c in at.sidebar.caption)
    assert _title(at).startswith(f"v{corr.version} · correction")
    at.selectbox(key=PICK).set_value(f"version:{model.id}").run()
    assert not at.exception, at.exception
    assert np.array_equal(at.session_state["current_labels"], edited)  # nothing replaced yet
    warning = " ".join(w.value for w in at.sidebar.warning)
    assert f"{changed} unsaved edited voxels" in warning and "replaces them" in warning

    at.button(key="label_source_cancel").click().run()  # keep them
    assert np.array_equal(at.session_state["current_labels"], edited)
    assert _title(at).startswith(f"v{corr.version} · correction")

    at.selectbox(key=PICK).set_value(f"version:{model.id}").run()
    at.button(key="label_source_confirm").click().run()  # give them up
    assert not at.exception, at.exception
    assert np.array_equal(at.session_state["current_labels"], _load(env, msd_dir, model))
    assert _title(at) == f"v{model.version} · model output"
    _nav(at, "pages/segment.py")  # the editor works on the chosen version now, without unsaved changes
    assert np.array_equal(at.session_state["current_labels"], _load(env, msd_dir, model))
    assert any(f"same as version {model.version} (model)" in c.value for c in at.caption)


def test_saving_on_segment_makes_the_new_correction_the_viewers_choice(env: Path, msd_dir: Path) -> None:
    _save(env, msd_dir, ["model"])
    at = _app("pages/segment.py", case=CASE)
    _edit_on_segment(at)
    at.button(key="seg_save").click().run()
    assert not at.exception, at.exception
    assert any("Saved as version 2" in s.value for s in at.success)
    _nav(at, "pages/viewer.py")
    assert _title(at) == "v2 · correction (default)"
    assert not at.sidebar.caption or not any("unsaved" in c.value for c in at.sidebar.caption)


def test_switching_cases_warns_and_a_dropped_stash_is_named(env: Path, msd_dir: Path) -> None:
    at = _app("pages/segment.py", case="hippocampus_001")
    order = ["hippocampus_001", "hippocampus_003", "hippocampus_007", "hippocampus_008", "hippocampus_011"]
    dropped: list[str] = []
    for i, case in enumerate(order):
        if i == 4:  # this switch would push hippocampus_001's kept edits out: the page asks first
            at.selectbox(key="case_select").set_value(case).run()
            question = " ".join(w.value for w in at.warning)
            assert f"Open {case}? Your unsaved edits of hippocampus_001 would be lost" in question, question
            assert at.session_state["current_case"] == order[3]
            at.button(key="case_switch_cancel").click().run()  # stay: nothing changes, nothing is lost
            assert at.session_state["current_case"] == order[3] and not any("Open " in w.value for w in at.warning)
            at.selectbox(key="case_select").set_value(case).run()
            at.button(key="case_switch_confirm").click().run()
            assert not at.exception, at.exception
            assert at.session_state["current_case"] == case
            dropped += [w.value for w in at.warning if "are gone" in w.value]
        elif i:
            at.selectbox(key="case_select").set_value(case).run()
            assert not at.exception, at.exception
            dropped += [w.value for w in at.warning if "are gone" in w.value]
        _edit_on_segment(at)
        assert not any("are gone" in w.value for w in at.warning)  # shown once
        said = " ".join(w.value for w in [*at.warning, *at.caption])
        if i >= 3:  # three other cases kept aside already: the next switch drops the oldest, said loudly
            warning = " ".join(w.value for w in at.warning)
            assert f"{case} has unsaved edits" in warning and "up to 3 other cases" in warning
            assert f"drops those kept for {order[i - 3]}" in warning
        else:  # otherwise one line beside the picker: the edits are safe for this session
            assert f"{case}: " in said and "unsaved voxels, kept aside" in said and "up to 3 cases this session" in said
    assert len(dropped) == 1 and "hippocampus_001" in dropped[0], dropped

    # the three newest are still kept and come back
    at.selectbox(key="case_select").set_value("hippocampus_008").run()
    assert current_state(at).message == "Restored your unsaved edits of hippocampus_008."
    at.selectbox(key="case_select").set_value("hippocampus_001").run()  # would push hippocampus_003's edits out
    assert any("Your unsaved edits of hippocampus_003 would be lost" in w.value for w in at.warning)
    at.button(key="case_switch_confirm").click().run()
    assert at.session_state["current_case"] == "hippocampus_001"
    assert not current_state(at).message  # its edits were the ones dropped
