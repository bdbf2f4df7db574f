"""Resumable training: a run stopped, killed or paused part-way continues exactly as if it had never stopped.

Every test trains a tiny U-Net (4-8-16 channels) on 3 real Decathlon cases at a 16-voxel patch on the
CPU, a few tenths of a second per epoch, with augmentation and foreground sampling on so that every
random stream matters.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import segloop.training.loop as loop
from segloop.data.splits import msd_cases
from segloop.errors import SegLoopError
from segloop.model.network import DEFAULT_ARCHITECTURE, build_network
from segloop.training.loop import (
    RESUME_FILE,
    TrainConfig,
    capture_random_state,
    load_checkpoint,
    load_resume_state,
    predict_torch,
    restore_random_state,
    run_state,
    train,
)

TINY_ARCH = {**DEFAULT_ARCHITECTURE, "channels": [4, 8, 16], "strides": [2, 2]}
EPOCHS = 4


def tiny_config(**kw) -> TrainConfig:
    base = dict(epochs=EPOCHS, batch_size=2, patch=(16, 16, 16), val_every=1, architecture=TINY_ARCH, threads=1,
                warmup_steps=2, foreground_fraction=0.5, augment=True)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def cases(msd_dir):
    found = msd_cases(msd_dir)[:4]
    return found[:3], found[3:]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cases):
    """The uninterrupted run every interrupted one must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    summary = train(tiny_config(), *cases, out)
    return out, summary


def assert_same_run(a: Path, b: Path) -> None:
    """Same final weights bit for bit, same losses, same validation scores and the same best epoch."""
    wa, _ = load_checkpoint(a / "last.pt")
    wb, _ = load_checkpoint(b / "last.pt")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert np.array_equal(wa[key].numpy(), wb[key].numpy()), f"{key} differs"
    ha, hb = (json.loads((p / "history.json").read_text()) for p in (a, b))
    assert ha["epoch"] == hb["epoch"] == list(range(1, EPOCHS + 1))
    assert ha["loss"] == hb["loss"] and ha["val_dice"] == hb["val_dice"]
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    assert (sa["best_epoch"], sa["best_val"], sa["steps"]) == (sb["best_epoch"], sb["best_val"], sb["steps"])
    assert sb["complete"] and sb["epochs_run"] == EPOCHS


def test_cancel_then_resume_gives_the_uninterrupted_run(tmp_path, cases, reference):
    ref, ref_summary = reference
    assert ref_summary["complete"] and ref_summary["stopped"] == "completed" and ref_summary["resumed_from"] == 0
    polls = iter(range(1, 100))
    first = train(tiny_config(), *cases, tmp_path, should_stop=lambda: next(polls) == 2)  # stop after epoch 2
    assert (first["stopped"], first["complete"], first["epochs_run"]) == ("cancelled", False, 2)
    assert run_state(tmp_path) == "partial"
    state = load_resume_state(tmp_path / RESUME_FILE)
    assert state["meta"]["epoch"] == 2 and state["meta"]["config"]["epochs"] == EPOCHS
    assert {"state_dict", "optimizer", "torch_rng"} <= set(state) and state["optimizer"]["state"]
    assert set(state["meta"]["random_state"]) == {"numpy", "numpy_global", "python", "augmentation"}

    events = []
    second = train(tiny_config(), *cases, tmp_path, resume=True, on_progress=events.append)
    assert second["resumed_from"] == 2
    assert [e["epoch"] for e in events if e.get("state") == "training"] == [3, 4]
    assert run_state(tmp_path) == "complete"
    assert_same_run(ref, tmp_path)


def test_a_crash_mid_epoch_resumes_from_the_last_completed_epoch(tmp_path, cases, reference, monkeypatch):
    calls = {"n": 0}
    real = loop._sample_patch

    def crash_in_epoch_3(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2 * 3 + 2:  # 3 patches per epoch: the second patch of epoch 3
            raise RuntimeError("power cut")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "_sample_patch", crash_in_epoch_3)
    with pytest.raises(RuntimeError, match="power cut"):
        train(tiny_config(), *cases, tmp_path)
    monkeypatch.setattr(loop, "_sample_patch", real)
    assert load_resume_state(tmp_path / RESUME_FILE)["meta"]["epoch"] == 2
    assert json.loads((tmp_path / "history.json").read_text())["epoch"] == [1, 2]
    summary = train(tiny_config(), *cases, tmp_path, resume=True)
    assert summary["resumed_from"] == 2
    assert_same_run(reference[0], tmp_path)


def test_session_limit_pauses_and_the_next_session_finishes(tmp_path, cases, reference):
    first = train(tiny_config(), *cases, tmp_path, session_minutes=1e-6)
    assert (first["state"], first["stopped"], first["epochs_run"]) == ("paused", "session time limit reached", 1)
    assert not first["complete"]
    second = train(tiny_config(), *cases, tmp_path, resume=True)
    assert second["state"] == "finished" and second["resumed_from"] == 1
    assert_same_run(reference[0], tmp_path)


def test_resume_refuses_other_settings_or_cases(tmp_path, cases):
    train(tiny_config(epochs=2), *cases, tmp_path, should_stop=lambda: True)
    with pytest.raises(SegLoopError, match=r"epochs: 2 in the run, 3 now.*lr: 0.002 in the run, 0.001 now"):
        train(tiny_config(epochs=3, lr=1e-3), *cases, tmp_path, resume=True)
    train_cases, val_cases = cases
    with pytest.raises(SegLoopError, match="train_cases: 3 cases in the run, 2 cases now"):
        train(tiny_config(epochs=2), train_cases[:2], val_cases, tmp_path, resume=True)
    with pytest.raises(SegLoopError, match="val_cases"):
        train(tiny_config(epochs=2), train_cases, [], tmp_path, resume=True)
    assert load_resume_state(tmp_path / RESUME_FILE)["meta"]["epoch"] == 1  # nothing was touched
    # where and how fast it runs may change (another machine); the float sums may then differ in the last bit
    assert train(tiny_config(epochs=2, threads=2), *cases, tmp_path, resume=True)["complete"]


def test_a_complete_run_is_not_trained_again(tmp_path, cases):
    done = train(tiny_config(epochs=1), *cases, tmp_path)
    stamp = (tmp_path / "last.pt").stat().st_mtime_ns
    again = train(tiny_config(epochs=1), *cases, tmp_path, resume=True)
    assert again == json.loads(json.dumps(done)) and (tmp_path / "last.pt").stat().st_mtime_ns == stamp


def test_a_finished_run_from_before_resume_files_is_kept(tmp_path, cases):
    train(tiny_config(epochs=1), *cases, tmp_path)
    (tmp_path / RESUME_FILE).unlink()
    summary = json.loads((tmp_path / "summary.json").read_text())
    summary.pop("complete")  # as summaries written before resumable training
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    stamp = (tmp_path / "last.pt").stat().st_mtime_ns
    assert train(tiny_config(epochs=1), *cases, tmp_path, resume=True) == summary
    assert (tmp_path / "last.pt").stat().st_mtime_ns == stamp


def test_resume_before_the_first_epoch_ended_starts_over(tmp_path, cases, reference):
    (tmp_path / "config.json").write_text("{}")  # killed while loading: a run folder without resume.pt
    assert run_state(tmp_path) == "partial"
    train(tiny_config(), *cases, tmp_path, resume=True)
    assert_same_run(reference[0], tmp_path)


def test_random_state_round_trip_is_exact():
    aug = loop._augmenter((16, 16, 16), seed=3)
    rng = np.random.default_rng(3)
    x = {"image": np.random.default_rng(1).random((1, 16, 16, 16), dtype=np.float32),
         "label": np.zeros((1, 16, 16, 16), np.float32)}
    for _ in range(5):
        aug(dict(x)), rng.random(), random.random(), np.random.random()
    json_state, tensors = capture_random_state(rng, aug)
    json_state = json.loads(json.dumps(json_state))  # as stored in the checkpoint
    expected = [(np.asarray(aug(dict(x))["image"]), rng.random(), random.random(), np.random.random()) for _ in range(8)]

    fresh_aug, fresh_rng = loop._augmenter((16, 16, 16), seed=3), np.random.default_rng(99)
    random.seed(5), np.random.seed(5)
    restore_random_state(json_state, tensors, fresh_rng, fresh_aug)
    got = [(np.asarray(fresh_aug(dict(x))["image"]), fresh_rng.random(), random.random(), np.random.random())
           for _ in range(8)]
    for (ia, *va), (ib, *vb) in zip(expected, got):
        assert np.array_equal(ia, ib) and va == vb


def test_capturing_the_state_does_not_disturb_the_augmentation():
    """MONAI's Compose.__len__ re-seeds its transforms from fresh entropy: a capture must never call it."""
    x = {"image": np.random.default_rng(1).random((1, 16, 16, 16), dtype=np.float32),
         "label": np.zeros((1, 16, 16, 16), np.float32)}
    quiet, watched = loop._augmenter((16, 16, 16), seed=0), loop._augmenter((16, 16, 16), seed=0)
    rng = np.random.default_rng(0)
    for _ in range(12):
        capture_random_state(rng, watched)
        assert np.array_equal(np.asarray(quiet(dict(x))["image"]), np.asarray(watched(dict(x))["image"]))


def test_foreground_sampling_centres_patches_on_the_structure(cases):
    img, lbl = loop.load_case_arrays(cases[0][0])
    fg = np.argwhere(lbl > 0)
    patch = (8, 8, 8)
    rng = np.random.default_rng(0)
    centred = [loop._sample_patch(img, lbl, fg, patch, 1.0, rng)[1] for _ in range(30)]
    assert all(p[4, 4, 4] > 0 for p in centred)  # the chosen foreground voxel sits at the patch centre
    uniform = [loop._sample_patch(img, lbl, fg, patch, 0.0, np.random.default_rng(s))[1] for s in range(30)]
    assert sum((p > 0).any() for p in uniform) < 30  # small uniform crops often miss the hippocampus


def test_foreground_fraction_zero_keeps_the_default_random_stream(cases):
    """The default recipe draws exactly what it drew before the option existed."""
    img, lbl = loop.load_case_arrays(cases[0][0])
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(10):
        pa = loop._sample_patch(img, lbl, np.argwhere(lbl > 0), (16, 16, 16), 0.0, a)
        pb = loop._place_in_patch(img, lbl, (16, 16, 16), b)
        assert np.array_equal(pa[0], pb[0]) and np.array_equal(pa[1], pb[1])
    assert a.random() == b.random()


def test_default_recipe_is_unchanged_and_its_patch_holds_every_case_whole(msd_dir):
    cfg = TrainConfig()
    assert (cfg.foreground_fraction, cfg.val_tta, cfg.amp, cfg.patch) == (0.0, False, False, (48, 64, 48))
    # why foreground sampling is off by default: the largest Decathlon crop (43x59x47) fits the patch
    from segloop.io.readers import load_scan

    for case in msd_cases(msd_dir)[::20]:
        assert all(s <= p for s, p in zip(load_scan(case.image).shape, cfg.patch))


def test_mirror_tta_averages_the_left_right_mirror():
    import torch

    torch.manual_seed(0)
    model = build_network(TINY_ARCH).eval()
    img = np.random.default_rng(0).standard_normal((13, 18, 11)).astype(np.float32)
    plain = predict_torch(model, img, 4, (16, 16, 16))
    mirrored = predict_torch(model, np.ascontiguousarray(img[::-1]), 4, (16, 16, 16))[:, ::-1]
    both = predict_torch(model, img, 4, (16, 16, 16), mirror=True)
    np.testing.assert_allclose(both, (plain + mirrored) / 2, atol=1e-6)
    assert not np.allclose(plain, both, atol=1e-4)  # the untrained net is not symmetric: the mirror counts
    np.testing.assert_allclose(plain.sum(0), 1, atol=1e-5)


def test_config_record_round_trip():
    cfg = tiny_config(foreground_fraction=0.33, val_tta=True)
    again = TrainConfig.from_dict(json.loads(json.dumps(loop.config_record(cfg, [], []))))
    assert again == cfg and replace(again, threads=8) != cfg


def test_a_schedule_ended_by_its_time_budget_is_complete(tmp_path, cases):
    first = train(tiny_config(time_budget_min=1e-6), *cases, tmp_path)
    assert (first["stopped"], first["complete"], first["epochs_run"]) == ("time budget reached", True, 1)
    assert run_state(tmp_path) == "complete"
    (tmp_path / "summary.json").unlink()  # killed between the checkpoint and the summary
    again = train(tiny_config(time_budget_min=1e-6), *cases, tmp_path, resume=True)
    assert again["complete"] and again["epochs_run"] == 1  # its learning rate already reached 0: nothing to add
    assert json.loads((tmp_path / "history.json").read_text())["epoch"] == [1]


def test_bfloat16_autocast_runs_on_the_cpu(tmp_path, cases):
    summary = train(tiny_config(epochs=1, amp=True, val_tta=True, device="cpu"), *cases, tmp_path)
    assert summary["complete"] and 0 <= summary["best_val"]["mean_dice_all"] <= 1


def test_batched_augmentation_resumes_exactly_and_differs_from_none(tmp_path, cases):
    """The batch-wise augmentation draws from the run's generator, so a run stopped after epoch 2 and
    resumed ends with the uninterrupted run's weights; and it really changes what the network sees."""
    cfg = tiny_config(augmentation="batched")
    whole = train(cfg, *cases, tmp_path / "whole")
    assert whole["complete"]
    polls = iter(range(1, 100))
    train(cfg, *cases, tmp_path / "split", should_stop=lambda: next(polls) == 2)
    second = train(cfg, *cases, tmp_path / "split", resume=True)
    assert second["resumed_from"] == 2
    assert_same_run(tmp_path / "whole", tmp_path / "split")
    train(tiny_config(augment=False), *cases, tmp_path / "plain")
    losses = [json.loads((tmp_path / d / "history.json").read_text())["loss"] for d in ("whole", "plain")]
    assert losses[0] != losses[1]
