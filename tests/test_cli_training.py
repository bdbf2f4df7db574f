"""`python -m segloop train --resume` and `cv` as a user (or a GPU session's script) runs them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segloop.config import PROJECT_ROOT
from segloop.training.loop import RESUME_FILE, load_resume_state

TINY = ["--channels", "4,8,16", "--patch", "16,16,16", "--batch-size", "2", "--threads", "1"]


def segloop(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segloop", *args], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          timeout=timeout)


@pytest.fixture()
def small_msd(tmp_path, msd_dir) -> Path:
    """An MSD-style folder of 4 real cases, linked (not copied) from the shared data."""
    folder = tmp_path / "msd4"
    entries = json.loads((msd_dir / "dataset.json").read_text())["training"][:4]
    for e in entries:
        for key in ("image", "label"):
            target = folder / e[key]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to((msd_dir / e[key]).resolve())
    (folder / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "Anterior", "2": "Posterior"},
                                                     "training": entries}))
    return folder


def test_train_never_overwrites_a_run_and_resume_needs_one(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    res = segloop("train", "--out", str(tmp_path / "run"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith("error:") and "--resume" in res.stderr
    res = segloop("train", "--resume", str(tmp_path / "nothing"))
    assert res.returncode == 2 and "no training run to resume" in res.stderr


@pytest.mark.slow
def test_a_run_killed_by_sigterm_resumes_from_its_last_epoch(tmp_path, small_msd):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "segloop", "train", "--data", str(small_msd), "--out", str(run),
                             "--folds", "2", "--epochs", "30", "--val-every", "5", *TINY],
                            cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if load_resume_state(run / RESUME_FILE)["meta"]["epoch"] >= 3:
                    break
            except (OSError, RuntimeError, KeyError, EOFError):  # not written yet
                pass
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # mid-epoch, most likely; anywhere is fine
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    killed_at = load_resume_state(run / RESUME_FILE)["meta"]["epoch"]
    assert 3 <= killed_at < 30

    refused = segloop("train", "--resume", str(run), "--epochs", "80")
    assert refused.returncode == 2 and "epochs: 30 in the run, 80 now" in refused.stderr
    paused = segloop("train", "--resume", str(run), "--session-minutes", "0.00001")
    assert paused.returncode == 3 and f"train --resume {run}" in paused.stderr
    assert json.loads(paused.stdout.splitlines()[0])["epochs_run"] == killed_at + 1

    done = segloop("train", "--resume", str(run), "--threads", "1")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["complete"] and summary["epochs_run"] == 30 and summary["resumed_from"] == killed_at + 1
    history = json.loads((run / "history.json").read_text())
    assert history["epoch"] == list(range(1, 31))  # no epoch lost, none repeated
    assert history["val_epoch"] == list(range(5, 31, 5))


@pytest.mark.slow
def test_cv_command_reports_folds_and_a_rerun_skips_them(tmp_path, small_msd):
    out = tmp_path / "cv"
    res = segloop("cv", str(small_msd), "--out", str(out), "--folds", "2", "--epochs", "1", "--augmentation", "batched",
                  "--jobs", "2", *TINY)
    assert res.returncode == 0, res.stderr
    assert "(2 runs at once)" in res.stdout
    assert json.loads((out / "cv_config.json").read_text())["config"]["augmentation"] == "batched"
    assert "2-fold cross-validation, final epoch (4 cases)" in res.stdout and "mean ± SD across 2 folds" in res.stdout
    summary = json.loads((out / "cv_summary.json").read_text())
    assert [f["epoch"] for f in summary["folds"]] == [1, 1]
    again = segloop("cv", str(small_msd), "--out", str(out))  # settings come from the folder
    assert again.returncode == 0 and again.stdout.count("already trained") == 2
    other = segloop("cv", str(small_msd), "--out", str(out), "--epochs", "2")
    assert other.returncode == 2 and "epochs: 1 in the run, 2 now" in other.stderr
