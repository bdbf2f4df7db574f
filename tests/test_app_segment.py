"""The Segment & correct page driven through Streamlit's AppTest on real MSD data and the shipped model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the pages import `components` from the repository root
    sys.path.insert(0, str(ROOT))

from apptest_tables import table  # noqa: E402
from apptest_state import current_state, predictions  # noqa: E402
from apptest_view import view_data  # noqa: E402

from segloop.config import WEIGHTS_DIR  # noqa: E402
from segloop.display import planes  # noqa: E402
from segloop.editing import operations  # noqa: E402

SEGMENT = str(ROOT / "pages" / "segment.py")
CASE = "hippocampus_001"


@pytest.fixture()
def env(msd_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    if not (WEIGHTS_DIR / "hippocampus-unet-v1.onnx").is_file():
        pytest.skip("the shipped model weights/hippocampus-unet-v1.onnx is missing")
    ws = tmp_path / "ws"
    monkeypatch.setenv("SEGLOOP_DATA_DIR", str(msd_dir))
    monkeypatch.setenv("SEGLOOP_WORKSPACE", str(ws))
    return ws


def _segmented() -> AppTest:
    at = AppTest.from_file(SEGMENT, default_timeout=180)
    at.query_params["case"] = CASE
    at.run()
    assert not at.exception, at.exception
    at.button(key="seg_run").click().run()
    assert not at.exception, at.exception
    return at


def _grow(at: AppTest, value: int) -> np.ndarray:
    """Grow label `value` by one voxel with the page's button; returns the labels expected after it."""
    expected = at.session_state["current_labels"].copy()
    operations.grow(expected, value, 1)
    at.radio(key="seg_label").set_value(value).run()
    at.button(key="seg_grow").click().run()
    assert not at.exception, at.exception
    return expected


def test_run_segmentation_shows_provider_volumes_and_records_version(env: Path) -> None:
    at = _segmented()
    pred = predictions(at)
    assert len(pred) == 1
    cached = next(iter(pred.values()))
    labels = at.session_state["current_labels"]
    assert np.array_equal(labels, cached.labels)
    assert set(np.unique(labels)) <= {0, 1, 2} and (labels > 0).sum() > 500
    captions = " ".join(c.value for c in at.caption)
    assert "Execution provider: **CPUExecutionProvider**" in captions or "CUDAExecutionProvider" in captions
    assert "running on the" in captions  # the plain-words note
    table = at.dataframe[0].value
    assert list(table["Name"]) == ["anterior", "posterior"]
    assert (table["Model (mL)"] > 0.5).all() and (table["Model (mL)"] < 5).all()

    # recorded in the datastore: a 'model' version and the prediction with its uncertainty map
    from segloop.store.database import Datastore

    store = Datastore(workspace=env)
    scan = store.scans_named(CASE)[0]
    versions = store.label_versions(scan.id)
    assert [(v.version, v.kind) for v in versions] == [(1, "model")]
    (info,) = store.predictions()
    assert info.scan_id == scan.id and info.foreground_voxels == int((labels > 0).sum())
    unc = np.load(info.uncertainty_path)
    assert unc.shape == labels.shape and 0 < info.mean_uncertainty < 1

    # reruns (other widgets) never run the model again
    seconds = cached.seconds
    at.run()
    assert view_data(at, "seg_view")["extra"] is None
    at.toggle(key="seg_show_unc").set_value(True).run()
    assert not at.exception
    extra = view_data(at, "seg_view")["extra"]  # the uncertainty levels volume, with its heat palette
    assert extra["shape"] == list(labels.shape) and len(extra["palette"]) == 4
    assert at.session_state["seg_predict_calls"] == 1
    assert next(iter(predictions(at).values())).seconds == seconds
    assert "seg_run" not in [b.key for b in at.button]


def test_edit_undo_redo_and_save(env: Path) -> None:
    at = _segmented()
    before = at.session_state["current_labels"].copy()
    expected = _grow(at, 2)  # posterior
    labels = at.session_state["current_labels"]
    assert np.array_equal(labels, expected)
    assert not np.array_equal(labels, before)

    # a rerun applies nothing again
    at.run()
    assert np.array_equal(at.session_state["current_labels"], expected)

    at.button(key="seg_undo").click().run()
    assert np.array_equal(at.session_state["current_labels"], before)
    at.button(key="seg_redo").click().run()
    assert np.array_equal(at.session_state["current_labels"], expected)
    assert any("Unsaved changes" in w.value for w in at.warning)

    at.text_input(key="seg_author").input("Dr Test").run()
    at.button(key="seg_save").click().run()
    assert not at.exception, at.exception
    assert not any("Unsaved changes" in w.value for w in at.warning)

    from segloop.io.readers import load_label
    from segloop.store.database import Datastore

    store = Datastore(workspace=env)
    scan = store.scans_named(CASE)[0]
    model_v, corr = store.label_versions(scan.id)
    assert (corr.version, corr.kind, corr.author, corr.parent_version_id) == (2, "correction", "Dr Test", model_v.id)
    assert corr.model_id == model_v.model_id is not None
    changed = int((expected != before).sum())
    assert corr.changed_voxels == changed > 0
    assert set(corr.dice_vs_model) == {"1", "2"} and corr.dice_vs_model["2"] < 1.0
    vol = at.session_state["current_volume"]
    on_disk = load_label(corr.path, reference=vol).array
    assert np.array_equal(on_disk, expected)
    assert any("Saved as version 2" in s.value for s in at.success)

    # versions listed; opening the model version goes back to its labels
    table = at.dataframe[-1].value
    assert list(table["Version"]) == [2, 1]
    at.selectbox(key="seg_version_pick").set_value(1).run()
    at.button(key="seg_open_version").click().run()
    assert np.array_equal(at.session_state["current_labels"], before)
    assert at.session_state["seg_predict_calls"] == 1


def test_reopening_the_case_lists_saved_versions(env: Path) -> None:
    at = _segmented()
    _grow(at, 1)
    erased = at.session_state["current_labels"].copy()
    at.button(key="seg_save").click().run()

    fresh = AppTest.from_file(SEGMENT, default_timeout=180)  # a new browser session
    fresh.query_params["case"] = CASE
    fresh.run()
    assert not fresh.exception
    assert list(fresh.dataframe[-1].value["Version"]) == [2, 1]
    assert fresh.selectbox(key="seg_version_pick").value == 2  # the latest first
    fresh.button(key="seg_open_version").click().run()
    assert np.array_equal(fresh.session_state["current_labels"], erased)


def test_buttons_undo_and_tools_reach_the_view(env: Path) -> None:
    at = _segmented()
    start = at.session_state["current_labels"].copy()
    grown = _grow(at, 1)
    assert (grown == 1).sum() > (start == 1).sum()
    assert any("Grow anterior by 1 voxel" in m.value for m in at.markdown)  # label names, as the page shows them
    assert not any("label 1" in m.value for m in [*at.markdown, *at.caption])
    at.button(key="seg_undo").click().run()
    assert np.array_equal(at.session_state["current_labels"], start)

    # the view gets the tool, label and brush the sidebar shows, and the keyboard shortcuts
    at.radio(key="seg_tool").set_value("brush").run()
    at.radio(key="seg_label").set_value(2).run()
    at.slider(key="seg_brush").set_value(5).run()
    assert not at.exception, at.exception
    view = view_data(at, "seg_view")
    assert (view["tool"], view["value"], view["brush"], view["editable"]) == ("brush", 2, 5, True)
    assert view["shortcuts"]["p"] == {"action": "tool", "tool": "brush"}


def test_unsaved_edits_survive_switching_scans_and_the_viewer_reopening_the_case(env: Path) -> None:
    at = _segmented()
    _grow(at, 2)
    edited = at.session_state["current_labels"].copy()
    assert any("Unsaved changes" in w.value for w in at.warning)

    at.selectbox(key="case_select").set_value("hippocampus_003").run()
    assert not at.exception
    assert at.session_state["current_case"] == "hippocampus_003"
    at.selectbox(key="case_select").set_value(CASE).run()
    assert np.array_equal(at.session_state["current_labels"], edited)
    assert any("Restored your unsaved edits" in c.value for c in at.caption)  # the line above the views
    assert at.button(key="seg_undo").disabled is False

    # another page replacing the label array of the same scan (the Viewer reopening it) keeps the edits
    at.session_state["current_labels"] = current_state(at).edits.base_labels.copy()
    at.run()
    assert np.array_equal(at.session_state["current_labels"], edited)


def test_copy_slice_and_interpolate_buttons(env: Path) -> None:
    at = _segmented()
    start = at.session_state["current_labels"].copy()
    at.selectbox(key="seg_plane").set_value("axial").run()
    current_state(at).view["slices"]["axial"] = 17  # the browser reports the slice shown
    at.button(key="seg_copy_next").click().run()
    labels = at.session_state["current_labels"]
    assert np.array_equal(labels[:, :, 17], start[:, :, 18])
    assert np.array_equal(np.delete(labels, 17, axis=2), np.delete(start, 17, axis=2))

    # interpolating a label that is missing on one end slice says so and changes nothing
    at.radio(key="seg_label").set_value(1).run()
    at.number_input(key="seg_interp_a").set_value(0).run()
    at.number_input(key="seg_interp_b").set_value(17).run()
    before = at.session_state["current_labels"].copy()
    at.button(key="seg_interp").click().run()
    assert not at.exception
    assert any("draw it on both slices first" in c.value for c in at.caption)
    assert np.array_equal(at.session_state["current_labels"], before)


@pytest.fixture()
def demo_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No data folder: the app opens its default demo, the whole MNI152 template."""
    if not (WEIGHTS_DIR / "hippocampus-unet-v1.onnx").is_file():
        pytest.skip("the shipped model weights/hippocampus-unet-v1.onnx is missing")
    monkeypatch.delenv("SEGLOOP_DATA_DIR", raising=False)
    monkeypatch.setenv("SEGLOOP_WORKSPACE", str(tmp_path / "ws"))
    return tmp_path / "ws"


def test_default_demo_is_a_whole_head_segmented_on_both_sides(demo_env: Path) -> None:
    at = AppTest.from_file(SEGMENT, default_timeout=180).run()
    assert not at.exception, at.exception
    assert at.session_state["current_case"] == "mni152_t1" and at.radio(key="seg_mode").value == "auto"
    at.button(key="seg_run").click().run()
    assert not at.exception, at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "Path: **whole head**" in captions and "register to MNI152" in captions and "segment left" in captions
    assert "eTIV" in captions and "asymmetry" in captions
    sides = table(at, "Side")
    assert list(sides["Side"]) == ["left", "right"]
    assert ((sides["Total (mL)"] > 2.5) & (sides["Total (mL)"] < 6)).all()
    labels = at.session_state["current_labels"]
    assert labels.shape == (197, 233, 189) and set(np.unique(labels)) == {0, 1, 2}

    # the box outlines are drawn on the slices that cut them; "Go to the right hippocampus" moves all three planes
    at.button(key="seg_goto_right").click().run()
    assert not at.exception, at.exception
    cached = next(iter(predictions(at).values()))
    right = next(s for s in cached.sides if s.side == "right")
    view = view_data(at, "seg_view")
    voxel = [int(round(v)) for v in right.centre]
    assert view["crosshair"] == voxel and view["slices_rev"] >= 1  # the browser adopts the move
    for plane in planes.PLANES:
        index, _, _ = planes.voxel_to_display(plane, tuple(voxel), labels.shape)
        assert view["slices"][plane] == index
        assert view["outlines"][plane][str(index)], f"no box outline on the {plane} slice through the box"
    sl = view["slices"]["sagittal"]
    assert labels[sl].any()  # the jump lands on labelled hippocampus


def test_forcing_the_whole_head_path_on_a_crop_explains_why_it_cannot(env: Path) -> None:
    at = AppTest.from_file(SEGMENT, default_timeout=180)
    at.query_params["case"] = CASE
    at.run()
    at.radio(key="seg_mode").set_value("whole-head").run()
    at.button(key="seg_run").click().run()
    assert not at.exception, at.exception
    assert any("Segmentation failed" in e.value and "whole-head scan" in e.value for e in at.error)
