"""tools/device_crossval.py: a cross-validation trained on a borrowed GPU comes back in at most 8 files
and is rebuilt here so that `segloop cv` finishes it without training or scoring anything again."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import segloop.training.crossval as crossval
from segloop.model.network import DEFAULT_ARCHITECTURE
from segloop.training.crossval import run_crossval
from segloop.training.loop import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import device_crossval  # noqa: E402

TINY = TrainConfig(epochs=1, batch_size=2, patch=(16, 16, 16), val_every=1, threads=1, warmup_steps=2,
                   architecture={**DEFAULT_ARCHITECTURE, "channels": [4, 8, 16], "strides": [2, 2]},
                   augmentation="batched")


def test_results_travel_in_few_files_and_finish_here_without_recomputing(tmp_path, msd_dir, monkeypatch):
    done = run_crossval(msd_dir, tmp_path / "device_cv", TINY, n_folds=2, max_cases=6)
    files = device_crossval.pack(tmp_path / "device_cv", tmp_path / "OUT")
    assert sorted(f.name for f in files) == ["cv_small.tar.gz", "fold_0_last.pt", "fold_1_last.pt"]
    assert len(list((tmp_path / "OUT").iterdir())) <= 8
    assert all(f.stat().st_size < 16 * 2**20 for f in files)

    device_crossval.main(["--unpack", str(tmp_path / "OUT"), "--cv", str(tmp_path / "here")])
    monkeypatch.setattr(crossval, "train", lambda *a, **k: pytest.fail("a fold was trained again"))
    monkeypatch.setattr(crossval, "score_fold", lambda *a, **k: pytest.fail("a fold was scored again"))
    # the device ran on CUDA with other paths: the device is a runtime setting and the data may move
    again = run_crossval(msd_dir, tmp_path / "here", TINY, n_folds=2, max_cases=6, ensemble=True)
    assert again["state"] == "finished"
    assert again["summary"]["across_folds"] == done["summary"]["across_folds"]
    assert (tmp_path / "here" / "ensemble").is_dir()
