"""Background fine-tuning: a real tiny run end to end, one at a time, cancel, and a killed job."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_model_registry import make_tiny_model

from segloop.config import shared_data_dir
from segloop.errors import SegLoopError
from segloop.io.readers import load_label, load_scan
from segloop.store.database import Datastore
from segloop.store.label_versions import save_label_version
from segloop.store.processes import pid_alive
from segloop.store.registry import list_models, register_model
from segloop.training import jobs
from segloop.training.jobs import cancel, job_lock_held, refresh_runs, run_status, start_training

MSD = shared_data_dir() / "msd-hippocampus"
pytestmark = pytest.mark.usefixtures("msd_dir")  # fails in CI, skips elsewhere, without the data


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


def _wait_until(condition, what: str, timeout: float = 30.0) -> None:
    """Poll `condition` until true; fail saying what did not happen (a deadline, not a timing check)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _no_waiting(seconds: float) -> None:
    raise AssertionError(f"cancel waited ({seconds} s) for the job instead of returning")


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
    val, parent_val = new.metrics["validation"], new.metrics["parent_validation"]
    assert set(val["dice"]) == {"anterior", "posterior"} and set(parent_val["dice"]) == {"anterior", "posterior"}
    assert val["cases"] == parent_val["cases"] == ["hippocampus_007", "hippocampus_011"]
    assert "run #" in val["protocol"]
    ev = st["evaluation"]
    assert ev["parent_version"] == 1 and 0.0 <= ev["new"]["mean_dice_all"] <= 1.0
    assert st["history"]["epoch"] == [1] and st["progress"]["state"] == "finished"
    assert Path(new.onnx_path).is_file() and Path(new.checkpoint_path).is_file()
    import json

    card = json.loads(Path(new.card_path).read_text())
    assert card["version"] == 2 and card["parent"] == "hippo-tiny v1"
    scan_id = store.scans_named("hippocampus_001")[0].id
    assert sorted(card["split"]["train"]) == [f"hippocampus_001#{scan_id}@v1", "hippocampus_003"]
    assert not job_lock_held(store)


def test_one_run_at_a_time_cancel_and_killed_job(tmp_path, tiny):
    store, params = _store(tmp_path, tiny)
    long = {**params, "epochs": 100000}
    run_id = start_training(store, long)
    with pytest.raises(SegLoopError, match="still"):
        start_training(store, params)
    _wait(store, run_id, lambda s: (s["status"] == "running" and s["progress"].get("epoch", 0) >= 1)
          or s["status"] not in ("queued", "running"), 90)
    pid = run_status(store, run_id)["pid"]
    # cancel does not wait for the job: with the job frozen (SIGSTOP) it cannot stop, yet cancel returns,
    # the run still running with the cancel requested, without once sleeping to poll it
    os.killpg(pid, signal.SIGSTOP)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(jobs, "time", SimpleNamespace(time=time.time, sleep=_no_waiting))
            st = cancel(store, run_id)
        assert st["status"] == "running" and st["cancel_requested"], st
        assert pid_alive(pid)
    finally:
        os.killpg(pid, signal.SIGCONT)  # the SIGTERM cancel sent is delivered now
    st = _wait(store, run_id, lambda s: s["status"] not in ("queued", "running"), 30)
    assert st["status"] == "cancelled", st["log_tail"]
    _wait_until(lambda: not pid_alive(pid), "the cancelled job's process to exit")
    assert len(list_models(store)) == 1
    # a job killed outright is noticed and marked failed; the registry is untouched
    run2 = start_training(store, long)
    st = _wait(store, run2, lambda s: s["status"] == "running", 60)
    os.killpg(st["pid"], signal.SIGKILL)
    st = _wait(store, run2, lambda s: s["status"] != "running", 20)
    assert st["status"] == "failed" and "exited unexpectedly" in st["error"]
    assert len(list_models(store)) == 1
    # the OS releases the dead job's lock once its whole process group is gone
    _wait_until(lambda: not job_lock_held(store), "the killed job's lock to be released", 15)
    run3 = start_training(store, params)  # and a new run can start
    assert _wait(store, run3, lambda s: s["status"] not in ("queued", "running"), 120)["status"] == "finished"


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


def test_finetuned_card_inherits_a_non_hippocampus_parent_card(tmp_path):
    """A model whose card is not the hippocampus one: its fine-tuned version keeps labels, input and processing."""
    from segloop.data.splits import Case
    from segloop.model.card import LabelInfo, load_card
    from segloop.training.finetune import plan_finetune

    files = make_tiny_model(tmp_path / "base", stem="organ-tiny")
    card = load_card(files["card"])
    card.task = "Two organs on a made-up modality"
    card.labels = [LabelInfo(0, "background", "#000000"), LabelInfo(1, "organ A", "#123456"),
                   LabelInfo(2, "organ B", "#654321")]
    card.input.modality, card.input.spacing, card.input.normalization = "CT", (1.5, 1.5, 2.0), "zscore"
    card.input.typical_shape = (40, 40, 40)
    card.processing.test_time_augmentation, card.processing.largest_component = [], False
    card.license, card.attribution = "CC0-1.0", "made for a test"
    card.save(files["card"])
    store = Datastore(workspace=tmp_path / "ws")
    base = register_model(store, files["onnx"], files["card"], files["ckpt"], activate=True)
    c = _case("hippocampus_001")
    scan = store.add_scan(c["name"], c["image"], "imported")
    ref = load_scan(c["image"])
    save_label_version(store, scan.id, load_label(c["label"], ref).array, ref, "correction", author="ann")
    plan = plan_finetune(store, base, validation=[Case(**_case("hippocampus_007"))], epochs=1, batch_size=1,
                         augment=False, threads=1)
    assert plan.problems() == [] and list(plan.corrected) == [scan.id]
    run_id = start_training(store, plan.params)
    st = _wait(store, run_id, lambda s: s["status"] in ("finished", "failed", "cancelled"))
    assert st["status"] == "finished", st["error"] or st["log_tail"]
    new = load_card(store.model(st["result_model_id"]).card_path)
    assert new.version == 2 and new.parent == "organ-tiny v1"
    assert (new.task, new.labels, new.input, new.processing) == (card.task, card.labels, card.input, card.processing)
    assert (new.license, new.attribution) == ("CC0-1.0", "made for a test")
    assert set(new.metrics.validation.dice) == {"organ A", "organ B"}
    assert new.training["corrected_cases"] == [f"hippocampus_001#{scan.id}@v1"] and new.training["original_cases"] == []


def _segloop(*args: str, env_ws: Path) -> subprocess.CompletedProcess:
    import sys

    env = {**os.environ, "SEGLOOP_WORKSPACE": str(env_ws)}
    env.pop("SEGLOOP_DATA_DIR", None)
    return subprocess.run([sys.executable, "-m", "segloop", *args], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parent.parent, timeout=300)


def test_finetune_command_plans_like_the_page_and_registers_an_inactive_version(tmp_path, tiny):
    """`python -m segloop finetune`: refuses without corrections, then runs the page's plan to a new version."""
    from segloop.model.card import load_card

    ws = tmp_path / "ws"
    card = load_card(tiny["card"])
    card.split = {"train": ["hippocampus_003", "hippocampus_004"], "validation": ["hippocampus_007"]}
    card.save(tmp_path / "hippo-tiny.card.json")
    store = Datastore(workspace=ws)
    register_model(store, tiny["onnx"], tmp_path / "hippo-tiny.card.json", tiny["ckpt"], activate=True)
    refused = _segloop("finetune", "--data", str(MSD), "--epochs", "1", env_ws=ws)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].startswith("error: choose at least one")
    assert store.runs() == []  # nothing started

    c = _case("hippocampus_001")
    scan = store.add_scan(c["name"], c["image"], "imported")
    ref = load_scan(c["image"])
    save_label_version(store, scan.id, load_label(c["label"], ref).array, ref, "correction", author="ann")
    done = _segloop("finetune", "--data", str(MSD), "--original", "1", "--epochs", "1", "--batch-size", "2",
                    "--threads", "1", "--no-augment", env_ws=ws)
    assert done.returncode == 0, done.stderr
    assert "1 corrected + 1 original cases; 1 fixed validation cases" in done.stdout
    result = __import__("json").loads(done.stdout.strip().splitlines()[-1])
    assert result["model_version"] == 2 and result["activated"] is False
    new = load_card(store.model_by_version(2).card_path)
    assert new.training["corrected_cases"] == [f"hippocampus_001#{scan.id}@v1"]
    assert new.training["original_cases"][0] in ("hippocampus_003", "hippocampus_004")
    assert new.metrics.validation.cases == ["hippocampus_007"] and store.active_model().version == 1
