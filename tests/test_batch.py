"""Cohorts (`python -m segloop batch`): inputs and names, bad scans, resuming, kills, dead workers, Ray, workspace.

Real data: MSD hippocampus crops (tests/conftest.py `msd_dir`), a garbage `bad.nii.gz`, and a synthetic
whole head (segloop.data.phantom) written to NIfTI.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import psutil
import pytest
from filelock import FileLock

from segloop.batch.engines import run_local, run_ray
from segloop.batch.inputs import expand_inputs, read_manifest
from segloop.batch.records import read_status, status_dir
from segloop.batch.run import BatchOptions, run_batch
from segloop.data.phantom import make_scan, random_scan_to_mni
from segloop.errors import SegLoopError
from segloop.io.readers import load_label, load_scan
from segloop.model.inference import default_model_path
from segloop.store.database import Datastore
from segloop.wholehead.segment import segment_scan

ROOT = Path(__file__).resolve().parent.parent
CROPS = ("hippocampus_001", "hippocampus_003", "hippocampus_007")


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segloop", "batch", *args, "--no-progress"], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)


def _touch_scan(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not read while listing")
    return path


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, msd_dir) -> Path:
    """inputs/: three MSD crops (copied, so a test may change one), bad.nii.gz (garbage), head.nii.gz (phantom)."""
    folder = tmp_path_factory.mktemp("cohort") / "inputs"
    folder.mkdir()
    for name in CROPS:
        shutil.copy(msd_dir / "imagesTr" / f"{name}.nii.gz", folder / f"{name}.nii.gz")
    (folder / "bad.nii.gz").write_bytes(os.urandom(4096))
    rng = np.random.default_rng(11)
    array, affine = make_scan(random_scan_to_mni(rng), rng, spacing=(1.5, 1.5, 1.5))
    nib.save(nib.Nifti1Image(array, affine), str(folder / "head.nii.gz"))
    return folder


@pytest.fixture(scope="module")
def local_run(cohort, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The cohort folder segmented once by the CLI on the local engine (2 workers)."""
    out = tmp_path_factory.mktemp("local") / "out"
    res = _cli(str(cohort), "--out", str(out), "--workers", "2")
    return out, res


# ------------------------------------------------------------------ inputs and names

def test_inputs_files_folders_globs_manifests_and_name_collisions(tmp_path):
    a, b, c = (_touch_scan(tmp_path / d / "T1.nii.gz") for d in ("a", "b", "c"))
    for sub in ("sub-01", "sub-02"):
        _touch_scan(tmp_path / "bids" / sub / "anat" / f"{sub}_T1w.nii.gz")
    (tmp_path / "bids" / "README.txt").write_text("not a scan")
    _touch_scan(tmp_path / "glob" / "x1.nrrd")
    (tmp_path / "glob" / "notes.txt").write_text("not a scan")
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(" Path ,subject,age\nc/T1.nii.gz,P001,70\n" + f"{tmp_path / 'missing.nii.gz'},P/002,71\n")
    inputs = [str(a), str(b), str(tmp_path / "bids"), str(tmp_path / "glob" / "*"), str(c), str(manifest)]

    plan = expand_inputs(inputs)
    names = {j.name: j for j in plan.jobs}
    hashed = {p: f"T1-{hashlib.sha256(str(p).encode()).hexdigest()[:8]}" for p in (a, b)}
    assert {str(p): n for p, n in hashed.items()} == {j.path: j.name for j in plan.jobs if j.name.startswith("T1")}
    assert any("2 inputs share the name T1" in n for n in plan.notes)  # said, not silently overwritten
    others = set(names) - set(hashed.values())
    assert others == {"sub-01_anat_sub-01_T1w", "sub-02_anat_sub-02_T1w", "x1", "P001", "P_002"}
    assert names["P_002"].subject == "P/002" and names["P_002"].path == str(tmp_path / "missing.nii.gz")
    assert names["P001"].path == str(c)  # given as a file and in the manifest: once, named by its subject id
    assert any("more than once" in n for n in plan.notes) and any("not scans" in n for n in plan.notes)
    assert names["sub-01_anat_sub-01_T1w"].reference is None
    # deterministic: the same inputs in another order get the same names
    assert {j.path: j.name for j in expand_inputs(inputs[::-1]).jobs} == {j.path: j.name for j in plan.jobs}
    assert read_manifest(manifest)[0] == (str(c), "P001")


def test_inputs_typing_mistakes_stop_before_anything_runs(tmp_path):
    bad_manifest = tmp_path / "m.csv"
    bad_manifest.write_text("file,subject\nx.nii.gz,1\n")
    (tmp_path / "empty").mkdir()
    for inputs, message in (([str(tmp_path / "nope.nii.gz")], "no such file or folder"),
                            ([str(tmp_path / "*.mha")], "matches no files"),
                            ([str(bad_manifest)], "needs a 'path' column"),
                            ([str(tmp_path / "empty")], "no scans found"),
                            ([], "no inputs")):
        with pytest.raises(SegLoopError, match=message):
            expand_inputs(inputs)


# ------------------------------------------------------------------ local engine, bad scans, report

def test_local_batch_writes_labels_status_and_report_and_records_the_bad_scan(local_run, cohort):
    out, res = local_run
    assert res.returncode == 2, res.stderr  # one scan failed, the others were written
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 1 of 5 scans failed: bad") and "Traceback" not in res.stderr
    assert "batch: 5 scans: 4 ok (0 already done), 1 failed" in res.stdout
    bad = read_status(out, "bad")
    assert bad["status"] == "failed" and "bad.nii.gz" in bad["error"] and bad["input_sha256"]
    assert not (out / "bad.nii.gz").exists()
    head = read_status(out, "head")
    assert head["status"] == "ok" and head["kind"] == "whole head" and head["seconds"] > 0
    for name in CROPS:
        record = read_status(out, name)
        assert record["status"] == "ok" and record["kind"] == "crop" and Path(record["output"]).is_file()
        vol = load_scan(cohort / f"{name}.nii.gz")
        labels = load_label(out / f"{name}.nii.gz", reference=vol).array  # on the scan's own grid
        expected = segment_scan(vol).labels
        assert np.mean(labels == expected) > 0.999  # as `predict` makes it (ONNX Runtime threads may differ)
    report = pd.read_csv(out / "volumes.csv")
    assert list(report.columns[:4]) == ["scan", "status", "error", "input"]
    rows = report.set_index("scan")
    assert set(rows.index) == {*CROPS, "bad", "head"}
    assert rows.loc["bad", "status"] == "failed" and "bad.nii.gz" in rows.loc["bad", "error"]
    assert rows.loc["head", "path"] == "whole head" and 2.0 < rows.loc["head", "left_total_ml"] < 7.0
    assert rows.loc["hippocampus_001", "anterior_ml"] > 0.5 and np.isnan(rows.loc["hippocampus_001", "left_total_ml"])


def test_one_batch_per_output_folder(cohort, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with FileLock(str(out / ".batch.lock")):  # as a running batch holds it
        with pytest.raises(SegLoopError, match="another batch is writing to"):
            run_batch([str(cohort / "bad.nii.gz")], BatchOptions(out=out, workers=1, progress=False))
    assert not status_dir(out).exists()


def test_report_is_rebuilt_from_status_records(local_run, tmp_path):
    out, _ = local_run
    target = tmp_path / "rebuilt.csv"
    res = _cli("--out", str(out), "--report", str(target))
    assert res.returncode == 0, res.stderr
    assert pd.read_csv(target).equals(pd.read_csv(out / "volumes.csv"))


def test_rerun_skips_finished_scans_and_redoes_only_a_changed_one(local_run, cohort, tmp_path):
    first_out, _ = local_run
    inputs, out = tmp_path / "inputs", tmp_path / "out"
    shutil.copytree(cohort, inputs)
    shutil.copytree(first_out, out)  # the records hold the inputs' hashes, not their paths: a moved cohort resumes
    before = {r["name"]: r for r in map(json.loads, (p.read_text() for p in status_dir(out).glob("*.json")))}
    result = run_batch([str(inputs)], BatchOptions(out=out, workers=2, progress=False))
    assert (result.total, result.skipped, result.ok, result.failed) == (5, 4, 4, 1)
    for name in (*CROPS, "head"):  # not redone: the very same record
        assert read_status(out, name) == before[name]
    assert read_status(out, "bad")["started"] > before["bad"]["started"]  # a failed scan is retried

    img = nib.load(str(inputs / "hippocampus_003.nii.gz"))
    data = np.asarray(img.dataobj).copy()
    data[0, 0, 0] += 1
    nib.save(nib.Nifti1Image(data, img.affine, img.header), str(inputs / "hippocampus_003.nii.gz"))
    result = run_batch([str(inputs)], BatchOptions(out=out, workers=2, progress=False))
    assert (result.skipped, result.ok, result.failed) == (3, 4, 1)
    changed = read_status(out, "hippocampus_003")
    assert changed["started"] > before["hippocampus_003"]["started"]
    assert changed["input_sha256"] != before["hippocampus_003"]["input_sha256"]
    for name in ("hippocampus_001", "hippocampus_007", "head"):
        assert read_status(out, name) == before[name]


def test_a_killed_batch_resumes_without_redoing_finished_scans(msd_dir, cohort, tmp_path):
    crops = sorted((msd_dir / "imagesTr").glob("hippocampus_0*.nii.gz"))[:30]
    inputs = [str(p) for p in crops] + [str(cohort / "head.nii.gz")]
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "segloop", "batch", *inputs, "--out", str(out), "--workers", "2",
                             "--no-progress"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(status_dir(out).glob("*.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=10)  # orphaned workers notice and stop
    assert not alive
    finished = {p.stem: json.loads(p.read_text()) for p in status_dir(out).glob("*.json")}
    assert 1 <= len(finished) < len(inputs), "the kill came too late to test anything"

    res = _cli(*inputs, "--out", str(out), "--workers", "2")
    assert res.returncode == 0, res.stderr
    assert f"{len(finished)} already done" in res.stderr
    for name, record in finished.items():
        assert read_status(out, name) == record  # not redone
    records = [read_status(out, p.stem) for p in status_dir(out).glob("*.json")]
    assert len(records) == len(inputs) and all(r["status"] == "ok" for r in records)
    assert len(pd.read_csv(out / "volumes.csv")) == len(inputs)


def die_on_killer(job: dict) -> dict:
    """Stand-in per-scan function: kills its worker process on the scan named 'killer', else succeeds."""
    if job["name"] == "killer":
        os._exit(3)
    return {"name": job["name"], "status": "ok", "error": "", "pid": os.getpid()}


def test_a_scan_that_kills_its_worker_is_recorded_and_the_others_finish(tmp_path):
    names = ["s1", "s2", "killer", "s3", "s4", "s5", "s6"]
    jobs = [{"name": n, "path": str(tmp_path / f"{n}.nii.gz"), "out": str(tmp_path), "mode": "auto"} for n in names]
    results: list[dict] = []
    run_local(jobs, 2, None, results.append, fn=die_on_killer)
    by_name = {r["name"]: r for r in results}
    assert sorted(by_name) == sorted(names) and len(results) == len(names)  # each exactly once
    assert by_name["killer"]["status"] == "failed" and "worker process died" in by_name["killer"]["error"]
    assert read_status(tmp_path, "killer")["status"] == "failed"
    assert all(by_name[n]["status"] == "ok" for n in names if n != "killer")


def always_die(job: dict) -> dict:
    """Stand-in per-scan function for a machine that cannot run anything: every worker dies."""
    os._exit(3)


def test_workers_dying_on_scan_after_scan_stop_the_batch_with_a_reason(tmp_path):
    jobs = [{"name": f"s{i}", "path": str(tmp_path / f"s{i}.nii.gz"), "out": str(tmp_path), "mode": "auto"}
            for i in range(5)]
    results: list[dict] = []
    with pytest.raises(SegLoopError, match="died on 3 scans in a row.*fewer --workers"):
        run_local(jobs, 1, None, results.append, fn=always_die)
    assert len(results) == 2 and all(r["status"] == "failed" for r in results)  # then it stopped


# ------------------------------------------------------------------ Ray

def test_ray_engine_without_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(SegLoopError, match=r"install ray: pip install 'ray\[data\]'"):
        run_ray([], 2, str(default_model_path()), lambda r: None)


@pytest.mark.slow  # starts a local Ray: 10-25 s
def test_ray_engine_gives_the_same_label_maps_as_the_local_engine(local_run, cohort, tmp_path):
    pytest.importorskip("ray")
    local_out, _ = local_run
    out = tmp_path / "ray"
    inputs = [str(cohort / f"{n}.nii.gz") for n in CROPS[:2]] + [str(cohort / "bad.nii.gz")]
    result = run_batch(inputs, BatchOptions(out=out, engine="ray", workers=2, progress=False))
    assert (result.ok, result.failed) == (2, 1)
    assert (result.engine["actors"], result.engine["gpus_per_actor"]) == (2, 0) and result.engine["cpus_per_actor"] >= 1
    assert read_status(out, "bad")["error"] == read_status(local_out, "bad")["error"]
    for name in CROPS[:2]:
        ray_labels = np.asarray(nib.load(str(out / f"{name}.nii.gz")).dataobj)
        local_labels = np.asarray(nib.load(str(local_out / f"{name}.nii.gz")).dataobj)
        assert np.array_equal(ray_labels, local_labels)
        assert read_status(out, name)["engine"] == "ray"
    assert len(pd.read_csv(out / "volumes.csv")) == 3


# ------------------------------------------------------------------ workspace

def test_workspace_records_scans_and_predictions_once(cohort, tmp_path):
    inputs = [str(cohort / f"{n}.nii.gz") for n in CROPS[:2]]
    options = BatchOptions(out=tmp_path / "out", workers=2, workspace=str(tmp_path / "ws"), progress=False)
    result = run_batch(inputs, options)
    assert (result.ok, result.registered) == (2, 2)
    store = Datastore(workspace=tmp_path / "ws")
    scans = {s.name: s for s in store.scans()}
    assert set(scans) == set(CROPS[:2]) and all(s.source == "datadir" for s in scans.values())
    predictions = store.predictions(store.active_model().id)
    assert sorted(p.scan_id for p in predictions) == sorted(s.id for s in scans.values())
    assert all(0.0 < p.mean_uncertainty < 1.0 and p.foreground_voxels > 0 for p in predictions)
    # the stored prediction is the batch's label map
    vol = load_scan(inputs[0])
    stored = load_label(store.label_versions(scans[CROPS[0]].id)[-1].path, reference=vol).array
    assert np.array_equal(stored, load_label(tmp_path / "out" / f"{CROPS[0]}.nii.gz", reference=vol).array)
    again = run_batch(inputs, options)  # a rerun records nothing twice
    assert (again.skipped, again.registered) == (2, 0)
    assert len(store.predictions()) == 2 and all(len(store.label_versions(s.id)) == 1 for s in scans.values())
