"""Shared fixtures: the project's real test data (../shared/data, or SEGLOOP_SHARED_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from segloop.config import shared_data_dir


def _missing(reason: str) -> None:
    """Skip a test that needs absent real data; in CI (`CI` set) fail it instead: CI must run against the data."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run against the real data", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the shared real data; tests that need it are skipped with a reason when it is absent."""
    root = shared_data_dir()
    if not root.is_dir():
        _missing(f"real test data not found at {root} (set SEGLOOP_SHARED_DATA)")
    return root


@pytest.fixture(scope="session")
def msd_dir(shared_data: Path) -> Path:
    """The Decathlon hippocampus folder (dataset.json, imagesTr/, labelsTr/)."""
    path = shared_data / "msd-hippocampus"
    if not (path / "imagesTr").is_dir():
        _missing(f"MSD hippocampus data not found at {path}")
    return path


@pytest.fixture(scope="session")
def dicom_dir(shared_data: Path) -> Path:
    """Folder holding Study1..3 with one DICOM series each."""
    path = shared_data / "dicom-hippocampus-crops"
    if not path.is_dir():
        _missing(f"DICOM test series not found at {path}")
    return path


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    """The model shipped in weights/ (ONNX with its card and torch checkpoint beside it)."""
    from segloop.model.inference import default_model_path

    path = default_model_path()
    assert path.is_file(), f"shipped model missing: {path}"
    return path


@pytest.fixture(scope="session")
def realheads_dir(shared_data: Path) -> Path:
    """The real whole-head T1 scans for development (scans/, peer-masks/)."""
    path = shared_data / "realheads-dev"
    if not (path / "scans").is_dir():
        _missing(f"real head scans not found at {path}")
    return path


@pytest.fixture()
def app_workspace(msd_dir: Path, shipped_model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fresh workspace the app (AppTest) uses, with the data folder and the shipped model; its folder."""
    monkeypatch.setenv("SEGLOOP_DATA_DIR", str(msd_dir))
    monkeypatch.setenv("SEGLOOP_WORKSPACE", str(tmp_path / "ws"))
    return tmp_path / "ws"
