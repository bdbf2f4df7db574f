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

from segloop.config import WEIGHTS_DIR  # noqa: E402
from segloop.display import planes  # noqa: E402

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


def _box(at: AppTest, plane: str, x: tuple[float, float], y: tuple[float, float]) -> None:
    """What the browser sends when a box is dragged on a plane's editing chart (figure coordinates, mm)."""
    key = f"seg_chart_{plane}_{at.session_state['seg_nonce'] if 'seg_nonce' in at.session_state else 0}"
    at.session_state[key] = {"selection": {"box": [{"xref": "x", "yref": "y", "x": list(x), "y": list(y)}],
                                           "lasso": [], "points": [], "point_indices": []}}


def test_run_segmentation_shows_provider_volumes_and_records_version(env: Path) -> None:
    at = _segmented()
    pred = at.session_state["seg_predictions"]
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
    at.slider(key="seg_slice_axial").set_value(5).run()
    assert not any('"uncertainty"' in c.proto.spec for c in at.get("plotly_chart"))
    at.toggle(key="seg_show_unc").set_value(True).run()
    assert not at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 3 and all('"name":"uncertainty"' in c.proto.spec.replace(" ", "") for c in charts)
    assert at.session_state["seg_predict_calls"] == 1
    assert next(iter(at.session_state["seg_predictions"].values())).seconds == seconds
    assert "seg_run" not in [b.key for b in at.button]


def test_box_edit_undo_redo_and_save(env: Path) -> None:
    at = _segmented()
    before = at.session_state["current_labels"].copy()
    plane, index = "axial", 17
    at.slider(key=f"seg_slice_{plane}").set_value(index).run()
    at.radio(key="seg_label").set_value(2).run()  # posterior
    # a box from x 10.3..20.6 mm, y 5.2..12.9 mm on a 1 mm grid covers pixel cols 11..20, rows 6..12
    _box(at, plane, (10.3, 20.6), (12.9, 5.2))
    at.run()
    assert not at.exception, at.exception
    labels = at.session_state["current_labels"]
    expected = before.copy()
    planes.slice_view(expected, plane, index)[6:13, 11:21] = 2
    assert np.array_equal(labels, expected)
    assert not np.array_equal(labels, before)
    assert any("rows 6–12, columns 11–20" in c.value for c in at.caption)

    # the same selection reported again on a rerun is not applied twice (the chart key moved on)
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
    at.radio(key="seg_label").set_value(0).run()  # eraser
    _box(at, "coronal", (0, 100), (0, 100))
    at.run()
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


def test_click_tools_buttons_and_brush_panel(env: Path) -> None:
    at = _segmented()
    start = at.session_state["current_labels"].copy()

    # delete component: a click on a posterior voxel erases its whole 3D piece
    vox = tuple(int(v) for v in np.argwhere(start == 2)[0])
    index, row, col = planes.voxel_to_display("axial", vox, start.shape)
    at.slider(key="seg_slice_axial").set_value(index).run()
    at.radio(key="seg_tool").set_value("delete component").run()
    at.session_state[f"seg_chart_axial_{at.session_state['seg_nonce'] if 'seg_nonce' in at.session_state else 0}"] = {
        "selection": {"points": [{"x": float(col), "y": float(row), "curve_number": 2}], "box": [], "lasso": []}}
    at.run()
    assert not at.exception, at.exception
    from scipy import ndimage

    comp, _ = ndimage.label(start == 2, structure=np.ones((3, 3, 3)))
    expected = start.copy()
    expected[comp == comp[vox]] = 0
    assert np.array_equal(at.session_state["current_labels"], expected)

    # grow anterior by one voxel, then undo both edits
    at.radio(key="seg_label").set_value(1).run()
    at.button(key="seg_grow").click().run()
    grown = at.session_state["current_labels"]
    assert (grown == 1).sum() > (expected == 1).sum() and ((grown != expected) <= (expected == 0)).all()
    assert any("Grow anterior by 1 voxel" in m.value for m in at.markdown)  # label names, as the page shows them
    assert not any("label 1" in m.value for m in [*at.markdown, *at.info])
    at.button(key="seg_undo").click().run()
    at.button(key="seg_undo").click().run()
    assert np.array_equal(at.session_state["current_labels"], start)

    # the brush tool shows its canvas without errors
    at.radio(key="seg_tool").set_value("brush").run()
    assert not at.exception, at.exception


def test_unsaved_edits_survive_switching_scans_and_the_viewer_reopening_the_case(env: Path) -> None:
    at = _segmented()
    at.radio(key="seg_label").set_value(0).run()
    _box(at, "sagittal", (0, 100), (0, 100))  # erase a whole sagittal slice
    at.run()
    edited = at.session_state["current_labels"].copy()
    assert any("Unsaved changes" in w.value for w in at.warning)

    at.selectbox(key="case_select").set_value("hippocampus_003").run()
    assert not at.exception
    assert at.session_state["current_case"] == "hippocampus_003"
    at.selectbox(key="case_select").set_value(CASE).run()
    assert np.array_equal(at.session_state["current_labels"], edited)
    assert any("Restored your unsaved edits" in i.value for i in at.info)
    assert at.button(key="seg_undo").disabled is False

    # another page replacing the label array of the same scan (the Viewer reopening it) keeps the edits
    at.session_state["current_labels"] = at.session_state["seg_base_labels"].copy()
    at.run()
    assert np.array_equal(at.session_state["current_labels"], edited)


def test_copy_slice_and_interpolate_buttons(env: Path) -> None:
    at = _segmented()
    start = at.session_state["current_labels"].copy()
    at.selectbox(key="seg_plane").set_value("axial").run()
    at.slider(key="seg_slice_axial").set_value(17).run()
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
    assert any("draw it on both slices first" in i.value for i in at.info)
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
    cached = next(iter(at.session_state["seg_predictions"].values()))
    right = next(s for s in cached.sides if s.side == "right")
    for plane in planes.PLANES:
        index, _, _ = planes.voxel_to_display(plane, tuple(int(round(v)) for v in right.centre), labels.shape)
        assert at.slider(key=f"seg_slice_{plane}").value == index
    specs = " ".join(c.proto.spec for c in at.get("plotly_chart"))
    assert specs.count('"right box"') == 3 and '"dash":"dash"' in specs.replace(" ", "")
    sl = at.session_state["seg_slice_sagittal"]
    assert labels[sl].any()  # the jump lands on labelled hippocampus


def test_forcing_the_whole_head_path_on_a_crop_explains_why_it_cannot(env: Path) -> None:
    at = AppTest.from_file(SEGMENT, default_timeout=180)
    at.query_params["case"] = CASE
    at.run()
    at.radio(key="seg_mode").set_value("whole-head").run()
    at.button(key="seg_run").click().run()
    assert not at.exception, at.exception
    assert any("Segmentation failed" in e.value and "whole-head scan" in e.value for e in at.error)
