"""Model registry: versions copied in, exactly one active model, activation history and rollback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segloop.errors import ModelError
from segloop.model.network import DEFAULT_ARCHITECTURE
from segloop.store.database import Datastore
from segloop.store.registry import (
    activate,
    activation_history,
    active_model,
    ensure_shipped_model,
    list_models,
    register_model,
    rollback,
)

TINY_ARCH = {**DEFAULT_ARCHITECTURE, "channels": [4, 8, 16], "strides": [2, 2]}


def make_tiny_model(folder: Path, stem: str = "tiny", seed: int = 0, dice: float = 0.5) -> dict[str, Path]:
    """A real (untrained) tiny U-Net: torch checkpoint, ONNX export and model card, as training would leave them."""
    import torch

    from segloop.model.card import Evaluation, Metrics
    from segloop.model.network import build_network, size_divisor
    from segloop.training.export import export_onnx, hippocampus_card, write_card
    from segloop.training.loop import save_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    meta = {"architecture": TINY_ARCH, "normalization": "clip_zscore", "num_labels": 3,
            "size_divisor": size_divisor(TINY_ARCH), "patch": [32, 48, 32]}
    ckpt = folder / f"{stem}.pt"
    save_checkpoint(ckpt, build_network(TINY_ARCH), meta)
    onnx = folder / f"{stem}.onnx"
    export_onnx(ckpt, onnx)
    card = hippocampus_card(name=stem, version=1, onnx_path=onnx, checkpoint_meta=meta, training={}, split={},
                            metrics=Metrics(validation=Evaluation(cases=["a"], dice={"anterior": dice})))
    return {"onnx": onnx, "card": write_card(card, onnx), "ckpt": ckpt}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_register_copies_files_and_numbers_versions(tmp_path, tiny):
    store = Datastore(workspace=tmp_path / "ws")
    m1 = register_model(store, tiny["onnx"], checkpoint_path=tiny["ckpt"])
    m2 = register_model(store, tiny["onnx"], tiny["card"], tiny["ckpt"], parent_id=m1.id)
    assert (m1.version, m2.version, m2.parent_id) == (1, 2, m1.id)
    assert m1.metrics["validation"]["dice"] == {"anterior": 0.5}  # from the card found beside the ONNX file
    assert m2.metrics == m1.metrics
    assert Path(m2.onnx_path) == tmp_path / "ws" / "models" / "v2" / "tiny.onnx"
    assert Path(m2.card_path).name == "tiny.card.json" and Path(m2.checkpoint_path).name == "tiny.pt"
    for m in (m1, m2):
        assert Path(m.onnx_path).read_bytes() == tiny["onnx"].read_bytes()
    assert active_model(store) is None  # registering never activates by itself
    assert not [p for p in (tmp_path / "ws" / "models").iterdir() if p.name.startswith(".")]
    with pytest.raises(ModelError, match="not found"):
        register_model(store, tmp_path / "missing.onnx")
    assert [m.version for m in list_models(store)] == [1, 2]


def test_the_registered_onnx_runs(tmp_path, tiny):
    import onnxruntime as ort

    store = Datastore(workspace=tmp_path)
    m = register_model(store, tiny["onnx"], tiny["card"], tiny["ckpt"], activate=True)
    sess = ort.InferenceSession(m.onnx_path, providers=["CPUExecutionProvider"])
    out = sess.run(None, {"image": np.zeros((1, 1, 16, 24, 16), np.float32)})[0]
    assert out.shape == (1, 3, 16, 24, 16)
    assert json.loads(Path(m.card_path).read_text())["onnx_sha256"]


def test_activate_and_rollback_keep_exactly_one_active(tmp_path, tiny):
    store = Datastore(workspace=tmp_path)
    models = [register_model(store, tiny["onnx"], tiny["card"], tiny["ckpt"]) for _ in range(3)]
    activate(store, 1)
    activate(store, 3)
    activate(store, 2)

    def active_versions() -> list[int]:
        return [m.version for m in list_models(store) if m.active]

    assert active_versions() == [2]
    assert rollback(store).version == 3 and active_versions() == [3]
    assert rollback(store).version == 1 and active_versions() == [1]
    with pytest.raises(ModelError, match="no earlier"):
        rollback(store)
    assert active_versions() == [1]
    activate(store, 1)  # already active: no new history entry
    actions = [(h["action"], h["model_id"]) for h in activation_history(store)]
    ids = {m.version: m.id for m in models}
    assert actions == [("activate", ids[1]), ("activate", ids[3]), ("activate", ids[2]),
                       ("rollback", ids[3]), ("rollback", ids[1])]
    with pytest.raises(Exception, match="not in the registry"):
        activate(store, 9)
    # nothing was ever deleted
    assert all(Path(m.onnx_path).is_file() for m in list_models(store))


def test_shipped_model_becomes_version_1_once(tmp_path, tiny):
    import shutil

    weights = tmp_path / "weights"
    weights.mkdir()
    store = Datastore(workspace=tmp_path / "ws")
    assert ensure_shipped_model(store, weights) is None and list_models(store) == []
    for key, suffix in (("onnx", ".onnx"), ("card", ".card.json"), ("ckpt", ".pt")):
        shutil.copyfile(tiny[key], weights / f"hippocampus-unet-v1{suffix}")
    m = ensure_shipped_model(store, weights)
    assert (m.version, m.active, Path(m.checkpoint_path).name) == (1, True, "hippocampus-unet-v1.pt")
    assert ensure_shipped_model(store, weights).id == m.id
    assert len(list_models(store)) == 1


def test_two_first_starts_at_once_register_the_shipped_model_once(tmp_path):
    """Two processes bootstrapping an empty registry at the same moment: one version 1, one active model."""
    import subprocess
    import sys

    ws = tmp_path / "ws"
    Datastore(workspace=ws)  # the schema exists; the registry is empty
    code = ("import sys; from segloop.store.database import Datastore; from segloop.store.registry import "
            "ensure_shipped_model; m = ensure_shipped_model(Datastore(workspace=sys.argv[1])); print(m.version)")
    root = Path(__file__).resolve().parent.parent
    procs = [subprocess.Popen([sys.executable, "-c", code, str(ws)], cwd=root, stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs) and outs == ["1"] * 4
    store = Datastore(workspace=ws)
    assert [m.version for m in store.models()] == [1] and store.active_model().version == 1
    assert sorted(p.name for p in (ws / "models").iterdir()) == ["v1"]  # no half-registered copies left
