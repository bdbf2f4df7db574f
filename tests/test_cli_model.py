"""`python -m segloop predict / evaluate / export / train --help` as a user runs them."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segloop.config import PROJECT_ROOT
from segloop.model.card import card_path_for, load_card


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segloop", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def unseen_cases(msd_dir, shipped_model):
    """Validation cases the shipped model never trained on."""
    card = load_card(card_path_for(shipped_model))
    names = card.split["validation"][:3]
    return [(msd_dir / "imagesTr" / f"{n}.nii.gz", msd_dir / "labelsTr" / f"{n}.nii.gz") for n in names]


def test_predict_then_evaluate_on_unseen_cases(tmp_path, unseen_cases):
    images = [str(i) for i, _ in unseen_cases]
    out = tmp_path / "pred"
    res = run_cli("predict", *images, "--out", str(out), "--json")
    assert res.returncode == 0, res.stderr
    results = json.loads(res.stdout)
    assert len(results) == 3
    for (img, _), r in zip(unseen_cases, results):
        written = nib.load(r["output"])
        source = nib.load(str(img))
        assert written.shape == source.shape  # the input's own grid...
        np.testing.assert_allclose(written.affine, source.affine)  # ...and affine
        assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2}
    refs = tmp_path / "ref"
    refs.mkdir()
    for _, lbl in unseen_cases:
        shutil.copy(lbl, refs / lbl.name)
    res = run_cli("evaluate", str(out), str(refs), "--json")
    assert res.returncode == 0, res.stderr
    ev = json.loads(res.stdout)
    assert ev["cases"] == 3
    for k in ("1", "2"):
        assert ev["mean"]["dice"][k]["mean"] > 0.75
        assert 0 < ev["mean"]["hd95"][k]["mean"] < 10
    text = run_cli("evaluate", str(out), str(refs))
    assert "label 1: Dice" in text.stdout


def test_predict_bad_input_writes_nothing(tmp_path, unseen_cases):
    good = str(unseen_cases[0][0])
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(gzip.compress(Path(good).read_bytes()[:0] + b"\x00" * 10)[:20])
    out = tmp_path / "out"
    res = run_cli("predict", good, str(truncated), "--out", str(out))
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "truncated.nii.gz" in lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_predict_with_missing_model_is_one_line_error(tmp_path, unseen_cases):
    res = run_cli("predict", str(unseen_cases[0][0]), "--out", str(tmp_path / "o"), "--model", str(tmp_path / "nope.onnx"))
    assert res.returncode != 0 and "Traceback" not in res.stderr and "model file not found" in res.stderr


def test_evaluate_missing_folder_is_one_line_error(tmp_path):
    res = run_cli("evaluate", str(tmp_path / "a"), str(tmp_path / "b"))
    assert res.returncode != 0 and res.stderr.startswith("error:") and "Traceback" not in res.stderr


@pytest.mark.parametrize("command", ["train", "cv", "export", "predict", "evaluate", "ensemble", "finetune", "batch", "doctor"])
def test_help_explains_every_option(command):
    import argparse

    from segloop.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[command]
    undocumented = [a.dest for a in parser._actions if a.dest != "help" and not (a.help or "").strip()]
    assert undocumented == []
    res = run_cli(command, "--help")
    assert res.returncode == 0 and "usage:" in res.stdout


def test_doctor_says_what_a_real_session_ran_on_and_why():
    import json

    res = run_cli("doctor", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["session uses"].split(", ")[0] in ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert report["onnxruntime"].startswith("onnxruntime") and "workspace" in report
    if report["session uses"].startswith("CPU"):  # then it says why, and how to fix it where CUDA exists
        assert report["verdict"].startswith("running on the CPU: ")
        assert "requirements-gpu.txt" in report.get("to use a GPU", "requirements-gpu.txt")
