"""One case, one place: the current case, its view and its numbers follow the user across pages (AppTest).

The app runs through app.py's navigation; `_nav` switches pages as the sidebar does in a browser,
which drops the query string (so a page only knows the case from the session, not from the URL).
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

from apptest_tables import table  # noqa: E402
from apptest_state import current_state  # noqa: E402
from apptest_view import view_data  # noqa: E402

from segloop.config import WEIGHTS_DIR  # noqa: E402
from segloop.display.label_volumes import label_volumes_ml  # noqa: E402

APP = str(ROOT / "app.py")
SEGMENT = str(ROOT / "pages" / "segment.py")


@pytest.fixture()
def env(msd_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("SEGLOOP_DATA_DIR", str(msd_dir))
    monkeypatch.setenv("SEGLOOP_WORKSPACE", str(tmp_path / "ws"))
    return msd_dir


@pytest.fixture()
def model_env(env: Path) -> Path:
    if not (WEIGHTS_DIR / "hippocampus-unet-v1.onnx").is_file():
        pytest.skip("the shipped model weights/hippocampus-unet-v1.onnx is missing")
    return env


def _nav(at: AppTest, page: str) -> AppTest:
    """Click a sidebar link: the browser drops the query string and runs the page through app.py."""
    at.query_params.clear()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _app(**params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


# --------------------------------------------------------------------------- 1. one current case


def test_case_picked_in_viewer_opens_on_every_page(env: Path) -> None:
    at = _app()
    at.selectbox(key="case_select").set_value("hippocampus_008").run()
    assert not at.exception, at.exception
    assert at.session_state["current_case"] == "hippocampus_008"
    assert at.query_params["case"] == "hippocampus_008"

    _nav(at, "pages/segment.py")
    assert at.session_state["current_case"] == "hippocampus_008"
    assert at.selectbox(key="case_select").value == "hippocampus_008"
    assert at.query_params["case"] == "hippocampus_008"
    assert any("hippocampus_008" in c.value for c in at.caption)

    for page in ("pages/cases.py", "pages/models.py", "pages/retrain.py"):
        _nav(at, page)
        assert at.query_params["case"] == "hippocampus_008", page  # the address bar keeps naming it
    _nav(at, "pages/viewer.py")
    assert at.session_state["current_case"] == "hippocampus_008"
    assert at.selectbox(key="case_select").value == "hippocampus_008"


def test_deep_link_then_pages_and_another_case(env: Path) -> None:
    at = _app(case="hippocampus_011")
    assert at.session_state["current_case"] == "hippocampus_011"
    _nav(at, "pages/segment.py")
    assert at.selectbox(key="case_select").value == "hippocampus_011"
    at.selectbox(key="case_select").set_value("hippocampus_014").run()  # edit another case
    assert at.session_state["current_case"] == "hippocampus_014" and at.query_params["case"] == "hippocampus_014"
    _nav(at, "pages/viewer.py")
    assert at.session_state["current_case"] == "hippocampus_014"
    assert at.selectbox(key="case_select").value == "hippocampus_014"

    # a link naming another case (Cases page, shared link, back button) makes that case current
    at.query_params.clear()  # a link replaces the whole query string
    at.query_params["case"] = "hippocampus_007"
    at.switch_page("pages/segment.py").run()
    assert at.session_state["current_case"] == "hippocampus_007"
    assert at.selectbox(key="case_select").value == "hippocampus_007"


def test_cases_page_opens_a_selected_row_and_names_the_current_case(env: Path) -> None:
    at = _app(case="hippocampus_003")
    _nav(at, "pages/cases.py")
    at.button(key="import_folder").click().run()
    assert not at.exception, at.exception
    assert at.query_params["case"] == "hippocampus_003"
    assert any("Current case: **hippocampus_003**" in m.value for m in at.markdown)
    links = [link.proto for link in at.get("page_link")]
    assert any("hippocampus_003" in link.query_string and link.page.endswith("viewer") for link in links), links

    cases = list(table(at, "Case")["Case"])
    row = cases.index("hippocampus_015")
    at.session_state["cases_table"] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, at.exception
    links = [link.proto for link in at.get("page_link")]
    assert any(link.label == "Correct hippocampus_015" and "case=hippocampus_015" in link.query_string
               for link in links), [(link.label, link.query_string) for link in links]
    # following that link: the Segment page opens on the row's case
    at.query_params.clear()
    at.query_params["case"] = "hippocampus_015"
    at.switch_page("pages/segment.py").run()
    assert at.session_state["current_case"] == "hippocampus_015"


def _nifti_bytes(msd_dir: Path, case: str) -> bytes:
    return (msd_dir / "imagesTr" / f"{case}.nii.gz").read_bytes()


def test_upload_is_named_in_the_scan_box_and_the_address_bar(env: Path) -> None:
    at = _app(case="hippocampus_001")
    data = _nifti_bytes(env, "hippocampus_017")
    at.session_state["_pending_upload"] = ("my_scan.nii.gz", data)  # what the uploader's callback leaves
    at.run()
    assert not at.exception, at.exception
    assert current_state(at).source == "upload"
    # the same voxels as a data-folder case: it is that scan, under its name in the workspace, or the upload's
    name = at.session_state["current_case"]
    assert name in ("my_scan", "hippocampus_017")
    assert at.query_params["case"] == name
    assert at.selectbox(key="case_select").value == name

    # a scan the workspace does not know yet keeps the uploaded file's name, and a link to it opens it elsewhere
    import nibabel as nib

    img = nib.load(str(env / "imagesTr" / "hippocampus_017.nii.gz"))
    arr = np.asarray(img.dataobj, dtype=np.float32)[::-1].copy()  # other voxels: a new scan
    new = nib.Nifti1Image(arr, img.affine)
    blob = new.to_bytes()
    import gzip

    at.session_state["_pending_upload"] = ("flipped scan.nii.gz", gzip.compress(blob))
    at.run()
    assert not at.exception, at.exception
    name = at.session_state["current_case"]
    assert name.startswith("flipped")
    assert at.query_params["case"] == name and at.selectbox(key="case_select").value == name
    assert "(uploaded)" in at.selectbox(key="case_select").format_func(name)

    other = _app(case=name)  # another browser session following the shared link
    assert other.session_state["current_case"] == name
    assert np.array_equal(other.session_state["current_volume"].array, at.session_state["current_volume"].array)
    assert not other.error


def test_bad_upload_names_the_file_never_a_temporary_path(env: Path) -> None:
    at = _app(case="hippocampus_001")
    at.session_state["_pending_upload"] = ("broken.nii.gz", b"this is not a scan")
    at.run()
    assert not at.exception, at.exception
    assert len(at.error) == 1
    message = at.error[0].value
    assert "broken.nii.gz" in message and "/tmp" not in message and "segloop-upload" not in message
    assert at.session_state["current_case"] == "hippocampus_001" and at.query_params["case"] == "hippocampus_001"


# --------------------------------------------------------------------------- 2. views come back as left


def _scroll(at: AppTest, **slices: int) -> None:
    """What the browser reports after the user scrolls the volume view (its debounced "view" state)."""
    at.session_state["scans"][at.session_state["current_scan"]].view["slices"].update(slices)


def test_viewer_window_and_slices_come_back_after_other_pages(env: Path) -> None:
    at = _app(case="hippocampus_008")
    auto = (at.session_state["window_center"], at.session_state["window_width"])
    assert auto[1] > 1
    _scroll(at, axial=5, coronal=30)
    at.number_input(key="window_width").set_value(auto[1] * 2).run()
    assert not at.exception, at.exception

    for page in ("pages/cases.py", "pages/models.py", "pages/viewer.py"):
        _nav(at, page)
    view = view_data(at, "viewer_view")
    assert (view["slices"]["axial"], view["slices"]["coronal"]) == (5, 30)
    assert view["window"][1] == pytest.approx(auto[1] * 2, rel=1e-4)
    assert at.number_input(key="window_width").value == pytest.approx(auto[1] * 2, rel=1e-4)
    assert at.number_input(key="window_center").value == pytest.approx(auto[0], rel=1e-4)

    # the Segment page opens where the Viewer was left, and the Viewer where Segment was left
    _nav(at, "pages/segment.py")
    assert view_data(at, "seg_view")["slices"]["axial"] == 5
    assert at.number_input(key="seg_window_width").value == pytest.approx(auto[1] * 2, rel=1e-4)
    _scroll(at, axial=9)
    _nav(at, "pages/cases.py")
    _nav(at, "pages/segment.py")
    assert view_data(at, "seg_view")["slices"]["axial"] == 9  # not 0
    _nav(at, "pages/viewer.py")
    assert view_data(at, "viewer_view")["slices"]["axial"] == 9

    # per case: another case opens on its own view, and going back restores this one
    at.selectbox(key="case_select").set_value("hippocampus_001").run()
    assert view_data(at, "viewer_view")["slices"]["axial"] == 35 // 2
    at.selectbox(key="case_select").set_value("hippocampus_008").run()
    view = view_data(at, "viewer_view")
    assert (view["slices"]["axial"], view["slices"]["coronal"]) == (9, 30)


def test_a_degenerate_window_falls_back_to_the_automatic_one(env: Path) -> None:
    at = _app(case="hippocampus_008")
    auto = (at.session_state["window_center"], at.session_state["window_width"])
    at.number_input(key="window_width").set_value(0.000001).run()
    assert not at.exception, at.exception
    assert at.number_input(key="window_width").value == pytest.approx(auto[1], rel=1e-4)
    assert any("back to the automatic window" in c.value for c in at.sidebar.caption)
    at.number_input(key="window_center").set_value(-1e9).run()  # far outside the scan's intensities
    assert at.number_input(key="window_center").value == pytest.approx(auto[0], rel=1e-4)

    from components.slice_viewer import sane_window

    assert sane_window(0.0, 0.000001, (120.0, 200.0)) == (120.0, 200.0)
    assert sane_window(float("nan"), 10.0, (120.0, 200.0)) == (120.0, 200.0)
    assert sane_window(100.0, 50.0, (120.0, 200.0)) == (100.0, 50.0)


# --------------------------------------------------------------------------- 3-6. the Segment page


def _segmented(case: str = "hippocampus_001") -> AppTest:
    at = AppTest.from_file(SEGMENT, default_timeout=180)
    at.query_params["case"] = case
    at.run()
    assert not at.exception, at.exception
    at.button(key="seg_run").click().run()
    assert not at.exception, at.exception
    return at


def _current_ml(at: AppTest) -> dict[str, float]:
    t = table(at, "Current (mL)")
    return dict(zip(t["Name"], t["Current (mL)"]))


def _expected_ml(at: AppTest) -> dict[str, float]:
    vol = at.session_state["current_volume"]
    rows = label_volumes_ml(at.session_state["current_labels"], vol.spacing, {1: "anterior", 2: "posterior"})
    found = {r["name"]: round(r["ml"], 3) for r in rows}
    return {name: found.get(name, 0.0) for name in ("anterior", "posterior")}


def test_volume_table_shows_the_labels_after_each_edit(model_env: Path) -> None:
    at = _segmented()
    before = _current_ml(at)
    at.radio(key="seg_label").set_value(2).run()
    at.button(key="seg_grow").click().run()
    assert not at.exception, at.exception
    after = _current_ml(at)
    assert after == _expected_ml(at)  # the table of the run that applied the edit
    assert after["posterior"] > before["posterior"]
    assert any("Grow posterior" in m.value for m in [*at.caption, *at.markdown])  # names, not "label 2"

    at.button(key="seg_undo").click().run()
    assert _current_ml(at) == _expected_ml(at) == before
    view = view_data(at, "seg_view")  # and the view shows the labels the table counts
    from segloop.display.volume_payload import pack_labels

    assert view["labels"]["digest"] == pack_labels(at.session_state["current_labels"]).digest


def test_changing_tools_clears_the_message_about_the_old_tool(model_env: Path) -> None:
    at = _segmented()
    at.radio(key="seg_label").set_value(1).run()
    at.button(key="seg_grow").click().run()
    assert any("Grow anterior" in c.value for c in [*at.caption, *at.info, *at.markdown])
    at.radio(key="seg_tool").set_value("brush").run()
    assert not at.exception, at.exception
    assert not any("Grow anterior by" in c.value for c in at.caption)
    assert view_data(at, "seg_view")["tool"] == "brush"


def test_flood_fill_says_what_it_fills_and_offers_region_growing(model_env: Path) -> None:
    at = _segmented()
    at.radio(key="seg_tool").set_value("flood fill").run()
    help_text = " ".join(c.value for c in at.caption)
    assert "connected pixels of the same label on that slice" in help_text
    at.toggle(key="seg_fill_by_intensity").set_value(True).run()
    assert "region growing" in " ".join(c.value for c in at.caption)
    # what the fill does with a click is checked on arrays (tests/test_volume_view.py) and in a browser (e2e)


# --------------------------------------------------------------------------- 7. start page


def test_start_page_opens_the_demo_and_shows_the_workflow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SEGLOOP_DATA_DIR", raising=False)
    monkeypatch.setenv("SEGLOOP_WORKSPACE", str(tmp_path / "ws"))
    at = _app()
    assert at.session_state["current_case"] == "mni152_t1"
    assert at.query_params["case"] == "mni152_t1"
    labels = [link.value for link in at.get("page_link")]
    steps = ["Viewer", "Segment & correct", "Cases", "Retrain", "Models"]
    assert [next(i for i, lab in enumerate(labels) if s in lab) for s in steps] == sorted(
        next(i for i, lab in enumerate(labels) if s in lab) for s in steps), labels
    assert all(any(s in lab for lab in labels) for s in steps), labels
