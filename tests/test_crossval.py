"""Honest cross-validation: seeded folds, final-epoch scores on held-out folds, mean ± SD, and a card that says so."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import segloop.training.crossval as crossval
from segloop.data.splits import kfold_split, kfold_splits, load_kfold_splits, msd_cases, save_kfold_splits
from segloop.errors import SegLoopError
from segloop.model.card import Processing, load_card
from segloop.model.metrics import summarize
from segloop.model.network import DEFAULT_ARCHITECTURE
from segloop.training.crossval import HEADLINE_CHECKPOINT, fold_dir, run_crossval, summarize_crossval
from segloop.training.export import check_parity, cross_validation_record, export_run
from segloop.training.loop import TrainConfig, load_case_arrays, load_checkpoint

TINY_ARCH = {**DEFAULT_ARCHITECTURE, "channels": [4, 8, 16], "strides": [2, 2]}


def tiny_config(**kw) -> TrainConfig:
    return TrainConfig(**{**dict(epochs=2, batch_size=2, patch=(16, 16, 16), val_every=1, architecture=TINY_ARCH,
                                 threads=1, warmup_steps=2), **kw})


def test_kfold_splits_put_every_case_in_exactly_one_held_out_fold(tmp_path):
    names = [f"case_{i:03d}" for i in range(23)]
    folds = kfold_splits(list(reversed(names)), 5, seed=4)
    held = [n for f in folds for n in f.validation]
    assert sorted(held) == names  # each case held out once, none twice
    assert [len(f.validation) for f in folds] == [5, 5, 5, 4, 4]
    for f in folds:
        assert f == kfold_split(names, 5, f.fold, 4)  # fold 0, seed 0 of 5 is the shipped model's split
        assert sorted(f.train + f.validation) == names and not set(f.train) & set(f.validation)
    save_kfold_splits(tmp_path / "splits.json", folds, data=tmp_path)
    saved = json.loads((tmp_path / "splits.json").read_text())
    assert saved["folds"][2]["validation"] == list(folds[2].validation) and saved["data"] == str(tmp_path.resolve())
    assert load_kfold_splits(tmp_path / "splits.json") == folds
    assert kfold_splits(names, 5, seed=5) != folds
    with pytest.raises(ValueError, match="unique"):
        kfold_splits(names + ["case_001"], 5)
    with pytest.raises(ValueError, match="cannot fill"):
        kfold_splits(names[:3], 5)
    with pytest.raises(ValueError, match="at least 2"):
        kfold_splits(names, 1)


def _case(dice1: float, dice2: float, hd1: float, hd2: float) -> dict:
    return {"dice": {1: dice1, 2: dice2}, "hd95": {1: hd1, 2: hd2},
            "missing": {1: dice1 == 0, 2: False}, "spurious": {1: False, 2: False}}


def test_summary_is_the_mean_and_sd_across_folds_of_the_fold_means():
    rng = np.random.default_rng(0)
    splits = kfold_splits([f"c{i}" for i in range(9)], 3, seed=0)
    folds = []
    for s in splits:
        per_case = {n: _case(*rng.uniform(0.6, 0.95, 2), *rng.uniform(1, 3, 2)) for n in s.validation}
        folds.append({"fold": s.fold, "labels": [1, 2], "epoch": 7, "per_case": per_case,
                      "train_summary": {"best_epoch": 5, "best_val": {"mean_dice": {"1": 0.99, "2": 0.98}}}})
    folds[1]["per_case"][splits[1].validation[0]] = _case(0.0, 0.8, float("nan"), 2.0)  # a missed structure
    summary = summarize_crossval(folds, splits, {"seed": 0})
    fold_means = [summarize(f["per_case"], [1, 2])["dice"][1]["mean"] for f in folds]
    across = summary["across_folds"]["dice"]["anterior"]
    assert across["mean"] == pytest.approx(np.mean(fold_means))
    assert across["sd"] == pytest.approx(np.std(fold_means, ddof=1))
    assert (across["min"], across["max"]) == (min(fold_means), max(fold_means))
    pooled = summarize({k: v for f in folds for k, v in f["per_case"].items()}, [1, 2])
    assert summary["pooled"]["dice"]["anterior"] == pooled["dice"][1]
    assert summary["folds"][1]["missing"]["anterior"] == 1
    assert summary["protocol"] == "3-fold cross-validation, final epoch" and summary["checkpoint"] == "last.pt"
    assert sorted(summary["cases"]) == sorted(n for s in splits for n in s.validation)
    # the fold's own best epoch is reported, but only as what it is
    assert summary["folds"][0]["selected_on_this_fold"]["best_epoch"] == 5
    assert "optimistic" in summary["folds"][0]["selected_on_this_fold"]["note"]
    table = crossval.format_crossval(summary)
    assert table.splitlines()[0] == "3-fold cross-validation, final epoch (9 cases)"
    assert f"anterior Dice {np.mean(fold_means):.4f} ± {np.std(fold_means, ddof=1):.4f}" in table

    ev, record = cross_validation_record(json.loads(json.dumps(summary)))
    assert ev.protocol.startswith("3-fold cross-validation, final epoch; ")
    assert ev.dice["anterior"] == round(np.mean(fold_means), 4)
    assert ev.dice_std["anterior"] == round(np.std(fold_means, ddof=1), 4)
    assert record["folds"] == 3 and [f["cases"] for f in record["per_fold"]] == [3, 3, 3]
    assert "exported_weights" not in record


def test_a_folder_holding_another_cross_validation_is_refused(tmp_path, msd_dir, monkeypatch):
    names = [c.name for c in msd_cases(msd_dir)][:6]
    record = crossval._cv_record(msd_dir, names, 2, 0, tiny_config(epochs=3), Processing(["flip_left_right"], True), 6)
    (tmp_path / "cv_config.json").write_text(json.dumps(record))
    monkeypatch.setattr(crossval, "train", lambda *a, **k: pytest.fail("must not train"))
    with pytest.raises(SegLoopError, match="epochs: 3 in the run, 2 now"):
        run_crossval(msd_dir, tmp_path, tiny_config(), n_folds=2, max_cases=6)
    with pytest.raises(SegLoopError, match="n_folds: 2 in the run, 3 now"):
        run_crossval(msd_dir, tmp_path, tiny_config(epochs=3), n_folds=3, max_cases=6)
    with pytest.raises(SegLoopError, match="test_time_augmentation"):
        run_crossval(msd_dir, tmp_path, tiny_config(epochs=3), n_folds=2, max_cases=6, mirror_tta=False)


@pytest.mark.slow
def test_cross_validation_end_to_end_pause_resume_ensemble_and_card(tmp_path, msd_dir, monkeypatch):
    cv = tmp_path / "cv"
    cfg = tiny_config()
    out_of_time = run_crossval(msd_dir, cv, cfg, n_folds=2, max_cases=6, session_minutes=0)
    assert out_of_time["state"] == "paused" and out_of_time["folds_done"] == []
    assert not (fold_dir(cv, 0) / "config.json").exists()  # nothing started
    real_train = crossval.train
    with monkeypatch.context() as m:  # fold 0 stops after its first epoch, as a killed or paused session would
        m.setattr(crossval, "train", lambda *a, **k: real_train(*a, **k, should_stop=lambda: True))
        stopped = run_crossval(msd_dir, cv, cfg, n_folds=2, max_cases=6)
    assert stopped["state"] == "paused" and stopped["folds_done"] == []
    with pytest.raises(SegLoopError, match="stopped part-way.*--resume"):
        run_crossval(msd_dir, cv, cfg, n_folds=2, max_cases=6)
    lines = []
    done = run_crossval(msd_dir, cv, cfg, n_folds=2, max_cases=6, resume=True, ensemble=True, log=lines.append)
    assert done["state"] == "finished" and done["folds_done"] == [0, 1]
    assert any("continuing" in line for line in lines)

    splits = load_kfold_splits(cv / "splits.json")
    by_name = {c.name: c for c in msd_cases(msd_dir)}
    names = sorted(n for s in splits for n in s.validation)
    assert len(names) == 6
    summary = json.loads((cv / "cv_summary.json").read_text())
    assert summary == json.loads(json.dumps(done["summary"]))
    for split, fold in zip(splits, summary["folds"]):
        run = fold_dir(cv, split.fold)
        heldout = json.loads((run / "heldout.json").read_text())
        # the headline is the final epoch's checkpoint, which the held-out fold did not choose
        assert heldout["checkpoint"] == HEADLINE_CHECKPOINT == "last.pt" and heldout["epoch"] == cfg.epochs
        assert load_checkpoint(run / "last.pt")[1]["epoch"] == cfg.epochs
        image = load_case_arrays(by_name[split.validation[0]])[0]
        assert check_parity(run / "last.pt", run / "final.onnx", [image])["max_abs_diff"] < 1e-4  # the ONNX is last.pt
        assert sorted(heldout["per_case"]) == list(split.validation)
        assert json.loads((run / "config.json").read_text())["train_cases"] == list(split.train)
        card = load_card(run / "final.card.json")
        assert "held-out fold" in card.metrics.validation.protocol and card.metrics.validation.cases == list(split.validation)
        assert fold["dice"]["anterior"] == pytest.approx(heldout["mean"]["dice"]["1"]["mean"])

    with open(cv / "cv_cases.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["case"] for r in rows) == names  # every case once, scored by the fold that held it out
    fold_of = {n: s.fold for s in splits for n in s.validation}
    assert all(int(r["fold"]) == fold_of[r["case"]] for r in rows)
    assert {"anterior_dice", "posterior_hd95_mm", "anterior_missing"} <= set(rows[0])
    assert (cv / "cv_table.txt").read_text().startswith("2-fold cross-validation, final epoch (6 cases)")

    # a rerun skips finished folds: nothing is trained or scored again
    monkeypatch.setattr(crossval, "train", lambda *a, **k: pytest.fail("a finished fold was trained again"))
    monkeypatch.setattr(crossval, "score_fold", lambda *a, **k: pytest.fail("a scored fold was scored again"))
    again = run_crossval(msd_dir, cv, cfg, n_folds=2, max_cases=6)
    assert again["summary"]["across_folds"] == summary["across_folds"]

    # the ensemble of the folds, exported: the card states the protocol, the figures and its training cases
    card = export_run(cv / "ensemble", tmp_path / "export" / "ens.onnx", name="ens", version=2)
    val = card.metrics.validation
    assert val.protocol.startswith("2-fold cross-validation, final epoch")
    assert val.dice["anterior"] == round(summary["across_folds"]["dice"]["anterior"]["mean"], 4)
    assert val.dice_std["posterior"] == round(summary["across_folds"]["dice"]["posterior"]["sd"], 4)
    assert val.cases == names
    assert card.split["train"] == names and card.split["validation"] == [] and card.split["n_folds"] == 2
    record = card.training["cross_validation"]
    assert record["folds"] == 2 and "folds [0, 1]" in record["exported_weights"]
    assert card.processing.test_time_augmentation == ["flip_left_right"] and card.processing.largest_component
    assert card.metrics.onnx_vs_pytorch["max_abs_diff"] < 1e-3
    assert not list((cv / "ensemble").glob("validation_*.json"))  # no case was held out from the ensemble


def test_a_fold_is_scored_with_its_final_epoch_never_its_best(tmp_path, msd_dir):
    """best.pt was chosen on the held-out fold; the headline must come from last.pt."""
    import torch

    from segloop.model.network import build_network, size_divisor
    from segloop.training.loop import save_checkpoint

    cases = msd_cases(msd_dir)[:4]
    split = kfold_splits([c.name for c in cases], 2, seed=0)[0]
    meta = {"architecture": TINY_ARCH, "normalization": "clip_zscore", "num_labels": 3,
            "size_divisor": size_divisor(TINY_ARCH), "patch": [16, 16, 16]}
    for name, seed, epoch in (("last.pt", 0, 9), ("best.pt", 1, 4)):
        torch.manual_seed(seed)
        save_checkpoint(tmp_path / name, build_network(TINY_ARCH), {**meta, "epoch": epoch})
    result = crossval.score_fold(tmp_path, split, {c.name: c for c in cases}, 2, Processing([], False))
    assert (result["checkpoint"], result["epoch"]) == ("last.pt", 9)
    assert sorted(result["per_case"]) == list(split.validation)
    image = [load_case_arrays(cases[0])[0]]
    assert check_parity(tmp_path / "last.pt", tmp_path / "final.onnx", image)["max_abs_diff"] < 1e-4
    assert check_parity(tmp_path / "best.pt", tmp_path / "final.onnx", image)["max_abs_diff"] > 1e-2
    card = load_card(tmp_path / "final.card.json")
    assert card.processing.test_time_augmentation == [] and not card.processing.largest_component
    assert card.metrics.validation.dice["anterior"] == round(result["mean"]["dice"][1]["mean"], 4)


def test_folds_trained_side_by_side_give_what_they_give_one_after_the_other(tmp_path, msd_dir):
    """--jobs 2 trains both folds at once in spawned processes; each fold's weights and held-out
    scores are bit for bit those of the sequential cross-validation (same threads per fold)."""
    cfg = tiny_config(augmentation="batched")
    seq = run_crossval(msd_dir, tmp_path / "seq", cfg, n_folds=2, max_cases=6)
    lines = []
    par = run_crossval(msd_dir, tmp_path / "par", cfg, n_folds=2, max_cases=6, jobs=2, log=lines.append)
    assert par["state"] == "finished" and par["folds_done"] == [0, 1]
    assert any("2 runs at once" in line for line in lines) and any("2 runs trained in" in line for line in lines)
    for k in (0, 1):
        wa = load_checkpoint(fold_dir(tmp_path / "seq", k) / "last.pt")[0]
        wb = load_checkpoint(fold_dir(tmp_path / "par", k) / "last.pt")[0]
        assert all(np.array_equal(wa[key].numpy(), wb[key].numpy()) for key in wa)
    assert par["summary"]["across_folds"] == seq["summary"]["across_folds"]
