"""Background fine-tuning: a real tiny run end to end, one at a time, cancel, and a killed job."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from segloop.config import shared_data_dir
from segloop.datastore import Datastore
from segloop.errors import SegLoopError
from segloop.label_versions import save_label_version
from segloop.loading import load_label, load_scan
from segloop.model_registry import list_models, register_model
from segloop.training_jobs import cancel, refresh_runs, run_status, start_training
from test_model_registry import make_tiny_model

MSD = shared_data_dir() / "msd-hippocampus"
pytestmark = pytest.mark.skipif(not (MSD / "imagesTr").is_dir(), reason="shared MSD data not available")


def _case(name: str) -> dict:
    return {"name": name, "image": str(MSD / "imagesTr" / f"{name}.nii.gz"),
            "label": str(MSD / "labelsTr" / f"{name}.nii.gz")}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("base"), stem="hippo-tiny")


def _store(ws: Path, tiny) -> tuple[Datastore, dict]:
    """A workspace with an active tiny base model and one corrected scan."""
    store = Datastore(workspace=ws)
    register_model(store, tiny["onnx"], tiny["card"], tiny["ckpt"], activate=True)
    c = _case("hippocampus_001")
    scan = store.add_scan(c["name"], c["image"], "imported")
    ref = load_scan(c["image"])
    save_label_version(store, scan.id, load_label(c["label"], ref).array, ref, "correction", author="ann")
    params = {"extra_cases": [_case("hippocampus_003")], "val_cases": [_case("hippocampus_007"), _case("hippocampus_011")],
              "epochs": 1, "batch_size": 2, "lr": 1e-3, "augment": False, "threads": 1}
    return store, params


def _wait(store: Datastore, run_id: int, until, timeout: float = 120.0) -> dict:
    t0 = time.time()
    while time.time() - t0 < timeout:
        st = run_status(store, run_id)
        if until(st):
            return st
        time.sleep(0.5)
    raise AssertionError(f"timed out; last status {st['status']}, log:\n{st['log_tail']}")


def test_finetune_runs_in_background_and_registers_an_inactive_version(tmp_path, tiny):
    store, params = _store(tmp_path, tiny)
    run_id = start_training(store, params)
    st = _wait(store, run_id, lambda s: s["status"] in ("finished", "failed", "cancelled"))
    assert st["status"] == "finished", st["error"] or st["log_tail"]
    models = list_models(store)
    assert [m.version for m in models] == [1, 2]
    new = models[1]
    assert not new.active and models[0].active  # a person activates it after comparing
    assert new.parent_id == models[0].id and st["result_model_id"] == new.id
    assert set(new.metrics["val_dice"]) == {"1", "2"} and "parent_val_dice" in new.metrics
    assert new.metrics["validation_cases"] == ["hippocampus_007", "hippocampus_011"]
    ev = st["evaluation"]
    assert ev["parent_version"] == 1 and 0.0 <= ev["new"]["mean_dice_all"] <= 1.0
    assert st["history"]["epoch"] == [1] and st["progress"]["state"] == "finished"
    assert Path(new.onnx_path).is_file() and Path(new.checkpoint_path).is_file()
    import json

    card = json.loads(Path(new.card_path).read_text())
    assert card["version"] == 2 and card["parent"] == "hippo-tiny v1"
    assert sorted(card["split"]["train"]) == ["hippocampus_001@v1", "hippocampus_003"]
    assert not (tmp_path / "runs" / "training.lock").exists()


def test_one_run_at_a_time_cancel_and_killed_job(tmp_path, tiny):
    store, params = _store(tmp_path, tiny)
    long = {**params, "epochs": 100000}
    run_id = start_training(store, long)
    with pytest.raises(SegLoopError, match="still"):
        start_training(store, params)
    _wait(store, run_id, lambda s: s["progress"].get("epoch", 0) >= 1 or s["status"] != "running", 90)
    st = cancel(store, run_id, grace_s=30)
    assert st["status"] == "cancelled", st["log_tail"]
    assert len(list_models(store)) == 1
    # a job killed outright is noticed and marked failed; the registry is untouched
    run2 = start_training(store, long)
    st = _wait(store, run2, lambda s: s["status"] == "running", 60)
    os.killpg(st["pid"], signal.SIGKILL)
    st = _wait(store, run2, lambda s: s["status"] != "running", 20)
    assert st["status"] == "failed" and "exited unexpectedly" in st["error"]
    assert len(list_models(store)) == 1 and not (tmp_path / "runs" / "training.lock").exists()


def test_stale_pid_of_a_dead_process_is_marked_failed(tmp_path):
    store = Datastore(workspace=tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    with store.write() as tx:
        rid = tx.insert_run(None, {})
        tx.update_run(rid, status="running", pid=dead.pid, started_at=time.time())
    assert refresh_runs(store) == [rid]
    assert store.run(rid).status == "failed"


def test_missing_validation_set_is_refused(tmp_path, tiny):
    store, params = _store(tmp_path, tiny)
    with pytest.raises(SegLoopError, match="validation"):
        start_training(store, {**params, "val_cases": []})
    with pytest.raises(SegLoopError, match="not found"):
        start_training(store, {**params, "val_cases": [_case("hippocampus_002")]})
    assert store.runs() == []
