"""Versioned models: register, activate, roll back. Files are copied in, never deleted.

Each registered model gets `<workspace>/models/v<N>/` holding its ONNX file, card JSON and torch
checkpoint (original file names kept, so `<stem>.card.json` sits beside `<stem>.onnx`). The
folder is filled under a temporary name and renamed into place while the database write lock is
held, then the row is committed: a crash leaves either nothing or a complete, registered model.
Exactly one model is active (a partial unique index enforces "at most one"; activation swaps it
in a single transaction). Activations are recorded, and `rollback` walks back through them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from segloop.config import WEIGHTS_DIR
from segloop.errors import ModelError
from segloop.model.card import Metrics, ModelCard, load_card, metrics_from_dict
from segloop.store.database import Datastore, ModelRecord

SHIPPED_STEM = "hippocampus-unet-v1"


def models_dir(store: Datastore) -> Path:
    return store.workspace / "models"


def _card_for(onnx_path: Path) -> Path:
    name = onnx_path.name[: -len(".onnx")] if onnx_path.name.endswith(".onnx") else onnx_path.stem
    return onnx_path.with_name(f"{name}.card.json")


def _copy(src: Path, dest_dir: Path) -> Path:
    dest = dest_dir / src.name
    shutil.copyfile(src, dest)
    with open(dest, "rb") as fh:
        os.fsync(fh.fileno())
    return dest


def register_model(store: Datastore, onnx_path: str | Path, card_path: str | Path | None = None,
                   checkpoint_path: str | Path | None = None, *, name: str | None = None,
                   parent_id: int | None = None, activate: bool = False,
                   note: str = "", author: str = "") -> ModelRecord:
    """Copy a model's files into the registry as the next version; returns its record.

    `card_path` defaults to `<stem>.card.json` beside the ONNX file; the row keeps a copy of the card's
    metrics. The model is activated only when `activate` is true.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelError(f"{onnx_path}: model file not found")
    card_path = Path(card_path) if card_path else _card_for(onnx_path)
    card: ModelCard | None = None
    if card_path.is_file():
        card = load_card(card_path)
    else:
        card_path = None
    ckpt = Path(checkpoint_path) if checkpoint_path else None
    if ckpt is not None and not ckpt.is_file():
        raise ModelError(f"{ckpt}: checkpoint file not found")
    if parent_id is not None:
        store.model(parent_id)  # raises if unknown
    root = models_dir(store)
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".staging-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        files = {"onnx": _copy(onnx_path, staging),
                 "card": _copy(card_path, staging) if card_path else None,
                 "ckpt": _copy(ckpt, staging) if ckpt else None}
        final: Path | None = None
        try:
            with store.write() as tx:
                version = tx.max_model_version() + 1
                while (root / f"v{version}").exists():  # a folder left by a crash after rename: never reuse it
                    version += 1
                final = root / f"v{version}"
                os.rename(staging, final)
                path = lambda f: str(final / f.name) if f else None  # noqa: E731
                mid = tx.insert_model(name or (card.name if card else onnx_path.stem), version, path(files["onnx"]),
                                      path(files["ckpt"]), path(files["card"]), parent_id,
                                      asdict(card.metrics) if card else {},
                                      note=note)
                if activate:
                    tx.set_active_model(mid, "activate", author)
        except BaseException:
            if final is not None and final.exists() and not staging.exists():
                os.rename(final, staging)  # the row was rolled back: take the folder back out
            raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return store.model(mid)


def ensure_shipped_model(store: Datastore, weights_dir: str | Path = WEIGHTS_DIR,
                         stem: str = SHIPPED_STEM) -> ModelRecord | None:
    """With an empty registry, register and activate the shipped model as version 1.

    Returns the active model, or None when the registry is empty and the shipped files are missing.
    """
    if store.models():
        return store.active_model()
    weights_dir = Path(weights_dir)
    onnx = weights_dir / f"{stem}.onnx"
    if not onnx.is_file():
        return None
    ckpt = weights_dir / f"{stem}.pt"
    try:
        return register_model(store, onnx, weights_dir / f"{stem}.card.json", ckpt if ckpt.is_file() else None,
                              activate=True, note="shipped model", author="segloop")
    except Exception:
        if store.models():  # another session registered it at the same time
            return store.active_model()
        raise


def list_models(store: Datastore) -> list[ModelRecord]:
    """All registered models, oldest version first."""
    return store.models()


def active_model(store: Datastore) -> ModelRecord | None:
    """The model inference uses now."""
    return store.active_model()


def activate(store: Datastore, version: int, author: str = "") -> ModelRecord:
    """Make model `version` the active one (single transaction)."""
    model = store.model_by_version(version)
    if not Path(model.onnx_path).is_file():
        raise ModelError(f"model v{version}: its ONNX file {model.onnx_path} is missing")
    with store.write() as tx:
        current = tx.active_model()
        if current is None or current.id != model.id:
            tx.set_active_model(model.id, "activate", author)
    return store.model(model.id)


def _activation_stack(history: list[dict[str, Any]]) -> list[int]:
    """Replay activations (push) and rollbacks (pop) into the stack whose top is the active model."""
    stack: list[int] = []
    for h in history:
        if h["action"] == "rollback" and len(stack) > 1 and stack[-2] == h["model_id"]:
            stack.pop()
        else:
            stack.append(h["model_id"])
    return stack


def rollback(store: Datastore, author: str = "") -> ModelRecord:
    """Re-activate the model that was active before the current one; repeated calls go further back."""
    with store.write() as tx:
        stack = _activation_stack(tx.activations())
        if len(stack) < 2:
            raise ModelError("there is no earlier active model to roll back to")
        target = stack[-2]
        tx.set_active_model(target, "rollback", author)
    return store.model(target)


def activation_history(store: Datastore) -> list[dict[str, Any]]:
    """Every activation and rollback, oldest first (model_id, previous_model_id, action, author, created_at)."""
    return store.activations()


def model_metrics(model: ModelRecord) -> Metrics:
    """A registered model's metrics, from its card (read through the card migration) or its row."""
    if model.card_path and Path(model.card_path).is_file():
        return load_card(model.card_path).metrics
    return metrics_from_dict(model.metrics)
