"""The Viewer page driven through Streamlit's AppTest on real MSD data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the pages import `components` from the repository root
    sys.path.insert(0, str(ROOT))

from apptest_view import view_data  # noqa: E402

from segloop.display import planes  # noqa: E402

VIEWER = str(ROOT / "pages" / "viewer.py")


@pytest.fixture()
def msd_env(msd_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("SEGLOOP_DATA_DIR", str(msd_dir))
    monkeypatch.setenv("SEGLOOP_WORKSPACE", str(tmp_path / "ws"))
    return msd_dir


def _open(case: str, **params: str) -> AppTest:
    at = AppTest.from_file(VIEWER, default_timeout=60)
    at.query_params["case"] = case
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    return at


def test_deep_link_opens_case_with_its_labels_and_volumes(msd_env: Path) -> None:
    at = _open("hippocampus_001")
    assert not at.exception
    assert not at.error
    assert at.session_state["current_case"] == "hippocampus_001"
    vol = at.session_state["current_volume"]
    assert vol.shape == (35, 51, 35)
    assert any("35 × 51 × 35" in c.value for c in at.caption)
    assert at.session_state["current_labels"] is not None
    # label volume table: MSD hippocampus_001 has both labels
    table = at.dataframe[0].value
    assert list(table["Label"]) == [1, 2] and (table["Volume (mL)"] > 0).all()
    assert list(table["Name"]) == ["Anterior", "Posterior"]  # from the folder's dataset.json

    view = view_data(at, "viewer_view")  # what the browser is given to show
    assert view["slices"]["axial"] == 35 // 2 and view["planes"] == list(planes.PLANES)
    assert view["labels"] is not None and view["image"]["shape"] == [35, 51, 35] and view["image"]["exact"]


def test_deep_link_plane_and_slice(msd_env: Path) -> None:
    at = _open("hippocampus_001", plane="coronal", slice="12")
    assert not at.exception
    view = view_data(at, "viewer_view")
    assert view["slices"]["coronal"] == 12
    assert view["slices"]["axial"] == 35 // 2


def test_unknown_case_in_link_shows_error_and_falls_back(msd_env: Path) -> None:
    at = _open("no_such_case")
    assert not at.exception
    assert any("no_such_case" in e.value for e in at.error)
    assert at.session_state["current_case"] == at.selectbox(key="case_select").value


def test_bad_upload_shows_scan_error_and_keeps_current_scan(msd_env: Path) -> None:
    def app() -> None:
        import streamlit as st

        from components import session
        from components.scan_picker import apply_upload

        if session.current_volume() is None:
            st.session_state["first"] = True
            import os

            from components.scan_picker import open_case
            from segloop.data.folders import resolve_case

            open_case(resolve_case(os.environ["SEGLOOP_DATA_DIR"], "hippocampus_001"), "data folder")
        ok = apply_upload("broken.nii.gz", b"this is not a scan")
        st.session_state["upload_ok"] = ok

    at = AppTest.from_function(app, default_timeout=60)
    at.run()
    assert not at.exception
    assert at.session_state["upload_ok"] is False
    assert len(at.error) == 1 and "broken.nii.gz" in at.error[0].value
    assert at.session_state["current_case"] == "hippocampus_001"


def test_app_navigation_runs_viewer(msd_env: Path) -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["case"] = "hippocampus_003"
    at.run()
    assert not at.exception
    assert at.session_state["current_case"] == "hippocampus_003"
    assert any("SegLoop" in m.value for m in at.sidebar.markdown)
