"""Knowledge distillation: a student learns a teacher's softmax, and a cross-validated student only ever
learns from teachers that never saw its held-out cases."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from segloop.data.splits import msd_cases
from segloop.errors import SegLoopError
from segloop.model.network import DEFAULT_ARCHITECTURE
from segloop.training.crossval import fold_dir, run_crossval
from segloop.training.loop import TrainConfig, load_case_arrays, load_checkpoint, load_model, train
from segloop.training.losses import distillation_loss

TINY = TrainConfig(epochs=3, batch_size=2, patch=(16, 16, 16), val_every=1, threads=1, warmup_steps=2,
                   architecture={**DEFAULT_ARCHITECTURE, "channels": [4, 8, 16], "strides": [2, 2]})


def test_the_loss_is_the_divergence_from_the_teacher_and_teaches_only_the_student():
    t = torch.softmax(torch.randn(2, 3, 4, 4, 4), dim=1)
    s = torch.randn(2, 3, 4, 4, 4, requires_grad=True)
    loss = distillation_loss(s, t)
    want = (t * (t.log() - torch.log_softmax(s, 1))).sum(1).mean()
    assert torch.isclose(loss, want)
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    stack = torch.stack([t.log(), torch.zeros_like(t)], dim=1)  # deep supervision: only output 0 is distilled
    assert float(distillation_loss(stack, t)) < 1e-6


@pytest.fixture(scope="module")
def cases(msd_dir):
    found = msd_cases(msd_dir)[:4]
    return found[:3], found[3:]


def _kl_to(teacher, student_ckpt, image) -> float:
    student, _ = load_model(student_ckpt)
    x = torch.from_numpy(image[None, None, :16, :16, :16].copy())
    with torch.no_grad():
        return float(distillation_loss(student(x), torch.softmax(teacher(x), dim=1)))


def test_a_student_learns_its_teacher_and_a_zero_weight_changes_nothing(tmp_path, cases):
    train(replace(TINY, seed=7), *cases, tmp_path / "teacher")
    teacher_ckpt = str(tmp_path / "teacher" / "last.pt")
    teacher, _ = load_model(teacher_ckpt)

    long = replace(TINY, epochs=12, lr=5e-3)
    train(long, *cases, tmp_path / "alone")
    train(replace(long, teacher=teacher_ckpt, distill_weight=0.0), *cases, tmp_path / "weight0")
    a, b = load_checkpoint(tmp_path / "alone" / "last.pt")[0], load_checkpoint(tmp_path / "weight0" / "last.pt")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)  # loading the teacher moved no random stream

    train(replace(long, teacher=teacher_ckpt, distill_weight=1.0), *cases, tmp_path / "taught")
    image = load_case_arrays(cases[1][0])[0]
    assert _kl_to(teacher, tmp_path / "taught" / "last.pt", image) < 0.6 * _kl_to(teacher, tmp_path / "alone" / "last.pt", image)
    assert json.loads((tmp_path / "taught" / "config.json").read_text())["teacher"] == teacher_ckpt


def test_each_fold_learns_from_the_teacher_fold_that_held_out_the_same_cases(tmp_path, msd_dir):
    run_crossval(msd_dir, tmp_path / "teacher", replace(TINY, epochs=1), n_folds=2, max_cases=6, refit=True)
    student = replace(TINY, epochs=1, distill_weight=0.5)
    done = run_crossval(msd_dir, tmp_path / "student", student, n_folds=2, max_cases=6, refit=True,
                        teacher_cv=tmp_path / "teacher")
    assert done["state"] == "finished"
    for k, name in ((0, "fold_0"), (1, "fold_1"), (-1, "all")):
        taught_by = json.loads((fold_dir(tmp_path / "student", k) / "config.json").read_text())["teacher"]
        assert taught_by == str((tmp_path / "teacher" / name / "last.pt").resolve())

    # a teacher cross-validated on other folds saw the cases held out here: refused before any training
    run_crossval(msd_dir, tmp_path / "other", replace(TINY, epochs=1), n_folds=2, max_cases=6, seed=1)
    with pytest.raises(SegLoopError, match="other folds"):
        run_crossval(msd_dir, tmp_path / "s2", student, n_folds=2, max_cases=6, teacher_cv=tmp_path / "other")
    with pytest.raises(SegLoopError, match="no final model.*--refit"):
        run_crossval(msd_dir, tmp_path / "s3", student, n_folds=2, max_cases=6, seed=1, refit=True,
                     teacher_cv=tmp_path / "other")
    assert not (tmp_path / "s2").exists() and not (tmp_path / "s3").exists()
