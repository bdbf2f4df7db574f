"""The DynUNet preset (nnU-Net's network for this task) with deep supervision: shapes, loss, size divisor,
training, and an ONNX export that gives what torch gives."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from monai.losses import DiceCELoss

import segloop.training.loop as loop
from segloop.cli import _recipe_config, build_parser
from segloop.data.splits import msd_cases
from segloop.errors import SegLoopError
from segloop.model.network import (
    DEFAULT_ARCHITECTURE,
    DYNUNET_ARCHITECTURE,
    build_network,
    ensemble_architecture,
    size_divisor,
)
from segloop.model.preprocessing import pad_to_multiple
from segloop.training.export import _precise_instance_norms, check_parity, export_onnx, export_run
from segloop.training.loop import TrainConfig, load_case_arrays, load_model, predict_torch, train
from segloop.training.losses import deep_supervision_weights, segmentation_loss

PATCH = (48, 64, 48)


def _small(**kw) -> dict:
    """The preset's layout with few filters: same levels, strides, norms and heads, cheap to run."""
    return {**DYNUNET_ARCHITECTURE, "filters": [4, 8, 16, 32], **kw}


def test_preset_is_nnunets_plan_for_this_task_and_survives_a_json_round_trip():
    arch = DYNUNET_ARCHITECTURE
    assert json.loads(json.dumps(arch)) == arch  # a model card stores it as JSON
    assert arch["name"] == "monai.networks.nets.DynUNet"
    assert arch["filters"] == [32, 64, 128, 256] and arch["strides"] == [1, 2, 2, 2]
    assert arch["kernel_size"] == [3, 3, 3, 3] and arch["upsample_kernel_size"] == arch["strides"][1:]
    assert arch["deep_supervision"] and arch["deep_supr_num"] == 2 and not arch["res_block"]
    net = build_network(arch)
    assert type(net).__name__ == "DynUNet"
    norms = [m for m in net.modules() if isinstance(m, torch.nn.InstanceNorm3d)]
    acts = [m for m in net.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert norms and all(n.affine for n in norms) and acts and all(a.negative_slope == 0.01 for a in acts)
    assert 5.5e6 < sum(p.numel() for p in net.parameters()) < 5.7e6
    assert DEFAULT_ARCHITECTURE["name"] == "monai.networks.nets.UNet"  # the shipped model's entry is untouched
    with pytest.raises(ValueError, match="cannot build"):
        build_network({**arch, "name": "monai.networks.nets.SegResNet"})


def test_training_mode_returns_the_deep_supervision_stack_and_eval_mode_plain_logits():
    torch.manual_seed(0)
    net = build_network(_small())
    x = torch.randn(2, 1, 16, 24, 8)
    stack = net.train()(x)
    assert stack.shape == (2, 3, 3, 16, 24, 8)  # (N, 1 + deep_supr_num, C, X, Y, Z), heads at full size
    with torch.no_grad():
        logits = net.eval()(x)
    assert logits.shape == (2, 3, 16, 24, 8)
    # the full-resolution output comes first (instance norm has no running statistics: same in both modes)
    assert torch.allclose(stack[:, 0].detach(), logits, atol=1e-5)
    assert not torch.allclose(stack[:, 1].detach(), logits, atol=1e-2)
    plain = build_network(_small(deep_supervision=False)).train()
    assert plain(x).shape == (2, 3, 16, 24, 8)
    ens = build_network(ensemble_architecture([_small(), DEFAULT_ARCHITECTURE])).eval()
    with torch.no_grad():
        assert ens(torch.randn(1, 1, 32, 16, 16)).shape == (1, 3, 32, 16, 16)


def test_loss_is_dicece_for_logits_and_nnunets_weighted_sum_for_a_stack():
    torch.manual_seed(0)
    y = torch.randint(0, 3, (2, 1, 8, 8, 8)).float()
    heads = [torch.randn(2, 3, 8, 8, 8) for _ in range(3)]
    loss, ref = segmentation_loss(), DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    assert torch.equal(loss(heads[0], y), ref(heads[0], y))
    assert deep_supervision_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    expected = 4 / 7 * ref(heads[0], y) + 2 / 7 * ref(heads[1], y) + 1 / 7 * ref(heads[2], y)
    assert torch.isclose(loss(torch.stack(heads, dim=1), y), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="neither logits nor"):
        loss(torch.randn(2, 3, 8, 8), y)
    with pytest.raises(ValueError):
        deep_supervision_weights(0)
    # every head learns: the loss of a training-mode forward sends gradient into both supervision heads
    net = build_network(_small()).train()
    loss(net(torch.randn(2, 1, 16, 16, 16)), torch.randint(0, 3, (2, 1, 16, 16, 16)).float()).backward()
    for head in net.deep_supervision_heads:
        grads = [p.grad for p in head.parameters()]
        assert grads and all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


def test_size_divisor_of_the_presets():
    assert size_divisor(DEFAULT_ARCHITECTURE) == 16
    assert size_divisor(DYNUNET_ARCHITECTURE) == 8
    assert size_divisor(ensemble_architecture([DEFAULT_ARCHITECTURE, DYNUNET_ARCHITECTURE])) == 16
    assert all(p % size_divisor(DYNUNET_ARCHITECTURE) == 0 for p in PATCH)
    net = build_network(_small()).eval()
    with torch.no_grad(), pytest.raises(RuntimeError):  # a size that is not a multiple does not fit
        net(torch.zeros(1, 1, 16, 16, 12))


LEVEL = st.one_of(st.sampled_from([1, 2]), st.lists(st.sampled_from([1, 2]), min_size=3, max_size=3))


@settings(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(strides=st.lists(LEVEL, min_size=2, max_size=3), first=st.sampled_from([1, 2]),
       multiples=st.tuples(*[st.integers(1, 2)] * 3))
def test_size_divisor_makes_every_axis_valid_for_any_dynunet_strides(strides, first, multiples):
    strides = [first, *strides]
    arch = {**DYNUNET_ARCHITECTURE, "strides": strides, "kernel_size": [3] * len(strides),
            "upsample_kernel_size": strides[1:], "filters": [2, 4, 4, 4][: len(strides)],
            "deep_supr_num": 1}
    div = size_divisor(arch)
    for axis in range(3):
        per_axis = math.prod(s[axis] if isinstance(s, list) else s for s in strides)
        assert div % per_axis == 0
    shape = (2 * multiples[0] * div, multiples[1] * div, multiples[2] * div)  # one axis twice: bottleneck > 1 voxel
    net = build_network(arch)
    with torch.no_grad():
        out = net.eval()(torch.zeros(1, 1, *shape))
    first_stride = first if isinstance(first, list) else [first] * 3
    assert out.shape == (1, 3, *(n // s for n, s in zip(shape, first_stride)))


def test_cli_architecture_option_builds_the_preset_for_the_task():
    parser = build_parser()
    cfg = _recipe_config(parser.parse_args(["train", "--out", "x", "--architecture", "dynunet"]), TrainConfig(num_labels=4))
    assert cfg.architecture == {**DYNUNET_ARCHITECTURE, "out_channels": 4}
    kept = _recipe_config(parser.parse_args(["train", "--out", "x"]), cfg)  # a resumed run keeps its network
    assert kept.architecture == cfg.architecture
    assert _recipe_config(parser.parse_args(["train", "--out", "x"]), TrainConfig()).architecture == DEFAULT_ARCHITECTURE
    back = _recipe_config(parser.parse_args(["cv", "d", "--out", "x", "--architecture", "unet"]), cfg)
    assert back.architecture == {**DEFAULT_ARCHITECTURE, "out_channels": 4}
    with pytest.raises(SegLoopError, match="--channels"):
        _recipe_config(parser.parse_args(["train", "--out", "x", "--architecture", "dynunet", "--res-units", "2"]),
                       TrainConfig())


def test_export_matches_torch_where_onnx_runtimes_instance_norm_alone_would_not(tmp_path):
    """ONNX Runtime's fused InstanceNormalization drifts by ~3e-4 on the DynUNet's full-resolution levels;
    the staged norms the export writes keep it at ~1e-5."""
    import onnxruntime as ort

    torch.manual_seed(0)
    net = build_network(DYNUNET_ARCHITECTURE).eval()
    img = np.maximum(np.random.default_rng(0).normal(size=(36, 50, 36)), 0).astype(np.float32) * 3
    x, _ = pad_to_multiple(img[None, None], 8, min_shape=PATCH)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
        staged = build_network(DYNUNET_ARCHITECTURE).eval()
        staged.load_state_dict(net.state_dict())
        assert _precise_instance_norms(staged) == 14
        assert np.abs(staged(torch.from_numpy(x)).numpy() - ref).max() < 5e-5  # the same maths in torch
    for model, name in ((net, "fused.onnx"), (staged, "staged.onnx")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, torch.zeros(1, 1, *PATCH), tmp_path / name, dynamo=False, opset_version=17,
                              input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": {2: "x", 3: "y", 4: "z"}, "logits": {2: "x", 3: "y", 4: "z"}})
    diff = {name: np.abs(ort.InferenceSession(str(tmp_path / name), providers=["CPUExecutionProvider"])
                         .run(None, {"image": x})[0] - ref).max() for name in ("fused.onnx", "staged.onnx")}
    assert diff["staged.onnx"] < 5e-5 < diff["fused.onnx"]


@pytest.mark.slow
def test_dynunet_trains_with_deep_supervision_and_exports_to_the_same_logits(tmp_path, msd_dir, monkeypatch):
    cases = msd_cases(msd_dir)[:3]
    seen = []
    real_loss = segmentation_loss

    def recording_loss():
        fn = real_loss()
        return lambda out, y: (seen.append(tuple(out.shape)), fn(out, y))[1]

    monkeypatch.setattr(loop, "segmentation_loss", recording_loss)
    cfg = TrainConfig(epochs=2, batch_size=2, patch=PATCH, val_every=1, threads=2, warmup_steps=1,
                      architecture=dict(DYNUNET_ARCHITECTURE))
    run = tmp_path / "run"
    summary = train(cfg, cases[:2], cases[2:], run)
    assert summary["complete"] and summary["epochs_run"] == 2 and summary["steps"] == 2
    assert seen == [(2, 3, 3, *PATCH)] * 2  # the loss saw the deep-supervision stack at every step
    history = json.loads((run / "history.json").read_text())
    assert all(np.isfinite(history["loss"])) and len(history["val_dice"]) == 2
    assert summary["best_val"] is not None and 0 <= summary["best_val"]["mean_dice_all"] <= 1

    model, meta = load_model(run / "last.pt")  # eval mode: plain logits for predict/evaluate
    assert meta["architecture"] == DYNUNET_ARCHITECTURE and meta["size_divisor"] == 8
    image = load_case_arrays(cases[2])[0]
    probs = predict_torch(model, image, 8, PATCH, mirror=True)
    assert probs.shape == (3, *image.shape) and np.allclose(probs.sum(0), 1, atol=1e-5)

    onnx_path = tmp_path / "export" / "dyn.onnx"
    export_onnx(run / "last.pt", onnx_path)
    parity = check_parity(run / "last.pt", onnx_path, [load_case_arrays(c)[0] for c in cases])
    assert parity["max_abs_diff"] < 1e-4 and parity["mean_label_agreement"] > 0.9999
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(2, 1, 56, 72, 40)).astype(np.float32)  # other batch and sizes
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = sess.run(None, {"image": x})[0]
    assert got.shape == ref.shape == (2, 3, 56, 72, 40) and np.abs(got - ref).max() < 1e-4

    card = export_run(run, tmp_path / "card" / "dyn.onnx", name="dyn", version=1, checkpoint=run / "last.pt",
                      data=msd_dir)
    assert card.architecture == DYNUNET_ARCHITECTURE and card.input.size_divisor == 8
    assert "deep supervision" in card.training["loss"] and "0.571" in card.training["loss"]
    assert card.metrics.onnx_vs_pytorch["max_abs_diff"] < 1e-4 and card.metrics.validation.cases == [cases[2].name]
