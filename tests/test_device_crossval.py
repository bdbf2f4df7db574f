"""tools/device_crossval.py: a cross-validation trained on a borrowed GPU comes back in at most 8 files
and is rebuilt here so that `segloop cv` finishes it without training or scoring anything again."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import segloop.training.crossval as crossval
from segloop.model.network import DEFAULT_ARCHITECTURE
from segloop.training.crossval import run_crossval
from segloop.training.export import export_run
from segloop.training.loop import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import device_crossval  # noqa: E402

TINY = TrainConfig(epochs=1, batch_size=2, patch=(16, 16, 16), val_every=1, threads=1, warmup_steps=2,
                   architecture={**DEFAULT_ARCHITECTURE, "channels": [4, 8, 16], "strides": [2, 2]},
                   augmentation="batched")


def test_results_travel_in_few_files_and_finish_here_without_recomputing(tmp_path, msd_dir, monkeypatch):
    # the two folds and the model on every case side by side, as on the GPU machine
    done = run_crossval(msd_dir, tmp_path / "device_cv", TINY, n_folds=2, max_cases=6, jobs=3, refit=True)
    assert done["refit"] == str(tmp_path / "device_cv" / "all")
    files = device_crossval.pack(tmp_path / "device_cv", tmp_path / "OUT")
    assert sorted(f.name for f in files) == ["all_last.pt", "cv_small.tar.gz", "fold_0_last.pt", "fold_1_last.pt"]
    assert len(list((tmp_path / "OUT").iterdir())) <= 8
    assert all(f.stat().st_size < 16 * 2**20 for f in files)

    device_crossval.main(["--unpack", str(tmp_path / "OUT"), "--cv", str(tmp_path / "here")])
    monkeypatch.setattr(crossval, "train", lambda *a, **k: pytest.fail("a fold was trained again"))
    monkeypatch.setattr(crossval, "score_fold", lambda *a, **k: pytest.fail("a fold was scored again"))
    # the device ran on CUDA with other paths: the device is a runtime setting and the data may move
    again = run_crossval(msd_dir, tmp_path / "here", TINY, n_folds=2, max_cases=6, ensemble=True, refit=True)
    assert again["state"] == "finished"
    assert again["summary"]["across_folds"] == done["summary"]["across_folds"]
    assert (tmp_path / "here" / "ensemble").is_dir()
    monkeypatch.undo()

    # the model to ship: trained on all 6 cases, its card carries the folds' figures and says what it is
    card = export_run(tmp_path / "here" / "all", tmp_path / "ship" / "m.onnx", name="m", version=2,
                      checkpoint=tmp_path / "here" / "all" / "last.pt", data=msd_dir)
    names = sorted(done["summary"]["cases"])
    assert sorted(card.split["train"]) == names and card.split["validation"] == []
    assert card.metrics.validation.protocol.startswith("2-fold cross-validation, final epoch")
    assert card.metrics.validation.dice["anterior"] == round(done["summary"]["across_folds"]["dice"]["anterior"]["mean"], 4)
    assert "all 6 cases" in card.training["cross_validation"]["exported_weights"]
    assert card.metrics.onnx_vs_pytorch["max_abs_diff"] < 1e-3
