"""The shipped model through ONNX Runtime: parity with PyTorch and training's preprocessing, outputs, checks."""

from __future__ import annotations

import numpy as np
import pytest

from segloop.data.splits import msd_cases
from segloop.errors import ModelError
from segloop.io.readers import load_label, load_scan
from segloop.model.card import card_path_for, file_sha256, load_card
from segloop.model.inference import get_session, keep_largest_component, predict
from segloop.model.metrics import dice_per_label
from segloop.model.runtime import cuda_status
from segloop.training.loop import load_case_arrays, load_model, predict_torch


@pytest.fixture(scope="module")
def card(shipped_model):
    return load_card(card_path_for(shipped_model))


@pytest.fixture(scope="module")
def val_cases(msd_dir, card):
    names = set(card.split["validation"])
    cases = [c for c in msd_cases(msd_dir) if c.name in names]
    assert len(cases) == len(names) > 0
    return cases


def test_card_describes_the_shipped_file(shipped_model, card):
    assert card.onnx_sha256 == file_sha256(shipped_model), "card does not belong to this ONNX file"
    assert [(lab.value, lab.name) for lab in card.labels] == [(0, "background"), (1, "anterior"), (2, "posterior")]
    assert card.input.orientation == "RAS" and card.input.size_divisor == 16
    assert "CC-BY-SA" in card.license and "Decathlon" in card.attribution
    assert not set(card.split["train"]) & set(card.split["validation"])
    dice = card.metrics.validation.dice
    assert set(dice) == {"anterior", "posterior"}


def test_onnx_matches_pytorch_and_training_preprocessing(shipped_model, val_cases):
    """Inference (load -> RAS -> normalise -> pad -> ORT) equals training's path (load_case_arrays -> torch)."""
    pytest.importorskip("torch", reason="the PyTorch side needs the train extra (pip install 'segloop[train]')")
    model, meta = load_model(shipped_model.with_suffix(".pt"))
    card = load_card(card_path_for(shipped_model))
    assert card.processing.test_time_augmentation == ["flip_left_right"]
    for case in val_cases[:3]:
        image_norm, _ = load_case_arrays(case)
        args = (meta["size_divisor"], tuple(meta["patch"]))
        mirrored = predict_torch(model, np.ascontiguousarray(image_norm[::-1]), *args)[:, ::-1]
        ref = (predict_torch(model, image_norm, *args) + mirrored) / 2  # the card's left-right flip TTA
        got = predict(load_scan(case.image), shipped_model, largest_component=False)
        assert got.probabilities.shape == ref.shape
        assert np.abs(got.probabilities - ref).max() < 1e-3
        assert np.array_equal(got.labels, ref.argmax(0).astype(np.uint8))


def test_prediction_outputs_on_real_case(shipped_model, val_cases, card):
    case = val_cases[0]
    vol = load_scan(case.image)
    ref = load_label(case.label, reference=vol)
    pred = predict(vol, shipped_model)
    assert pred.labels.shape == vol.shape and pred.labels.dtype == np.uint8
    assert pred.probabilities.shape == (3, *vol.shape)
    np.testing.assert_allclose(pred.probabilities.sum(0), 1.0, atol=1e-4)
    assert 0.0 <= pred.uncertainty.min() and pred.uncertainty.max() <= 1.0
    # uncertainty is highest near label boundaries, not in the middle of the background
    assert pred.mean_foreground_uncertainty > float(pred.uncertainty[pred.probabilities[0] > 0.999].mean())
    dice = dice_per_label(pred.labels, ref.array, [1, 2])
    assert dice[1] > 0.75 and dice[2] > 0.75
    assert pred.provider in ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert pred.provider_note
    assert pred.warnings == []


def test_provider_reason_is_plain_words():
    usable, why = cuda_status()
    if not usable:
        assert "CUDA" in why or "NVIDIA" in why or "GPU" in why


def test_session_is_cached(shipped_model):
    assert get_session(shipped_model) is get_session(shipped_model)


def test_scan_far_from_training_spacing_warns(shipped_model, val_cases):
    vol = load_scan(val_cases[0].image)
    vol.affine = vol.affine @ np.diag([3.0, 3.0, 3.0, 1.0])
    pred = predict(vol, shipped_model)
    assert any("spacing" in w for w in pred.warnings)


def test_large_volume_runs_by_sliding_window(shipped_model, val_cases):
    """A scan above the one-pass limit is segmented by sliding window, and every part is still right."""
    import segloop.model.inference as inf
    from segloop.io.volume import volume_from_array

    case = val_cases[1]
    vol = load_scan(case.image)
    ref = load_label(case.label, reference=vol).array
    row = np.concatenate([vol.array, vol.array], axis=0)
    big = volume_from_array(np.concatenate([row, row], axis=1), vol.affine)  # 2x2 tiles of one case
    old = inf.WHOLE_VOLUME_MAX_VOXELS
    inf.WHOLE_VOLUME_MAX_VOXELS = big.array.size - 1
    try:
        pred = predict(big, shipped_model, largest_component=False)
    finally:
        inf.WHOLE_VOLUME_MAX_VOXELS = old
    nx, ny, _ = vol.shape
    for ox in (0, nx):
        for oy in (0, ny):
            dice = dice_per_label(pred.labels[ox:ox + nx, oy:oy + ny], ref, [1, 2])
            assert dice[1] > 0.6 and dice[2] > 0.6, (ox, oy, dice)


def test_model_without_card_or_corrupt_model_is_refused(tmp_path, shipped_model):
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(shipped_model.read_bytes())
    with pytest.raises(ModelError, match="model card not found"):
        get_session(lonely)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    card_path_for(broken).write_text(card_path_for(shipped_model).read_text())
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        get_session(broken)


def test_model_that_does_not_fit_scan_channels(shipped_model):
    from segloop.model.card import check_scan_fits

    card = load_card(card_path_for(shipped_model))
    with pytest.raises(ModelError, match="channel"):
        check_scan_fits(card, (40, 50, 40), (1.0, 1.0, 1.0), channels=2)


def test_keep_largest_component():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[1:4, 1:4, 1:4] = 1
    labels[7, 7, 7] = 1
    labels[6:9, 1:3, 1:3] = 2
    out = keep_largest_component(labels)
    assert out[7, 7, 7] == 0 and (out == 1).sum() == 27 and (out == 2).sum() == 12
