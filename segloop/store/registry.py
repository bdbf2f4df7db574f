"""Versioned models: register, activate, roll back. Files are copied in, never deleted.

Each registered model gets `<workspace>/models/v<N>/` holding its ONNX file, card JSON and torch
checkpoint (original file names kept, so `<stem>.card.json` sits beside `<stem>.onnx`). The
folder is filled under a temporary name and renamed into place while the database write lock is
held, then the row is committed: a crash leaves either nothing or a complete, registered model.
Exactly one model is active (a partial unique index enforces "at most one"; activation swaps it
in a single transaction). Activations are recorded, and `rollback` walks back through them.

Activating and rolling back take the admin role (`segloop.store.identity.authorize`, checked here);
each records who did it (sign-in subject and e-mail) and appends an entry to the audit trail, in the
same transaction. Without an identity the call acts as the local identity, as before sign-in.
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
from segloop.store.database import Datastore, ModelRecord, Tx
from segloop.store.identity import SYSTEM, Action, Identity, acting, audit, authorize
from segloop.store.vocabulary import AuditAction

SHIPPED_STEM = "hippocampus-unet-v1"


def models_dir(store: Datastore) -> Path:
    """Return the registry's folder.

    Parameters
    ----------
    store : Datastore
        The workspace's database.

    Returns
    -------
    pathlib.Path
        ``<workspace>/models``, holding one ``v<N>/`` folder per version; not created here.
    """
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


class _RegistryNotEmpty(Exception):
    """`register_model(only_if_empty=True)` found a model already registered (checked under the write lock)."""


def register_model(store: Datastore, onnx_path: str | Path, card_path: str | Path | None = None,
                   checkpoint_path: str | Path | None = None, *, name: str | None = None,
                   parent_id: int | None = None, activate: bool = False, only_if_empty: bool = False,
                   note: str = "", author: str = "", identity: Identity | None = None) -> ModelRecord:
    """Copy a model's files into the registry as the next version; returns its record.

    `card_path` defaults to `<stem>.card.json` beside the ONNX file; the row keeps a copy of the card's
    metrics. The model is activated only when `activate` is true.

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    onnx_path : str or pathlib.Path
        The model's ONNX file.
    card_path : str or pathlib.Path, optional
        Its card; when that is not a file the model is registered without a card.
    checkpoint_path : str or pathlib.Path, optional
        Its torch checkpoint (needed later to fine-tune it).
    name : str, optional
        Model name; default: the card's name, else the ONNX file's stem.
    parent_id : int, optional
        Row id of the model it was fine-tuned from.
    activate : bool, optional
        Also make it the active model (recorded in the activation history).
    only_if_empty : bool, optional
        Register only when the registry is empty, checked inside the write transaction (so that two
        first visitors starting at once register the shipped model once); otherwise nothing is written.
    note : str, optional
        Free text for the row.
    author : str, optional
        Who activated it (with `activate`), in local mode.
    identity : Identity, optional
        Who activates it (with `activate`, which takes the admin role); None: the local identity.

    Returns
    -------
    ModelRecord
        The new model; version = highest registered + 1 (skipping any ``v<N>`` folder a crash left).

    Raises
    ------
    PermissionDenied
        With `activate`, when `identity` may not activate models (nothing is written).
    ModelError
        When the ONNX or checkpoint file is missing, or the card is invalid.
    SegLoopError
        When `parent_id` is not a registered model.

    Notes
    -----
    Side effects: ``<workspace>/models/v<N>/`` holding fsynced copies of the files (original names),
    one ``models`` row, and with `activate` an activation row. On any failure nothing is left behind.
    """
    if activate:
        identity, author = acting(identity, author)
        role = authorize(store, identity, Action.ACTIVATE)
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
                if only_if_empty and tx.max_model_version() > 0:
                    raise _RegistryNotEmpty()
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
                    _switch(tx, mid, AuditAction.ACTIVATE, identity, role, author)
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

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    weights_dir : str or pathlib.Path, optional
        Folder of the shipped files: ``<stem>.onnx``, ``<stem>.card.json`` and, optionally, ``<stem>.pt``.
    stem : str, optional
        Their common file stem.

    Returns
    -------
    ModelRecord or None
        The active model (None also when models exist but none is active).

    Raises
    ------
    ModelError
        When the shipped files cannot be registered (e.g. an invalid card), unless another session
        registered a model meanwhile.

    Notes
    -----
    Side effects, only with an empty registry: as `register_model` with ``activate=True``,
    note "shipped model", author "segloop".
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
                              activate=True, note="shipped model", author="segloop", only_if_empty=True,
                              identity=SYSTEM)
    except _RegistryNotEmpty:  # another session registered it first, inside its own write transaction
        return store.active_model()


def list_models(store: Datastore) -> list[ModelRecord]:
    """List all registered models, oldest version first.

    Parameters
    ----------
    store : Datastore
        The workspace's database.

    Returns
    -------
    list of ModelRecord
    """
    return store.models()


def active_model(store: Datastore) -> ModelRecord | None:
    """Return the model inference uses now.

    Parameters
    ----------
    store : Datastore
        The workspace's database.

    Returns
    -------
    ModelRecord or None
        None when no model is active.
    """
    return store.active_model()


def _switch(tx: Tx, model_id: int, action: str, identity: Identity, role: str, author: str) -> None:
    """Make `model_id` active, recording who did it in the activation history and the audit trail."""
    previous = tx.active_model()
    tx.set_active_model(model_id, str(action), author, identity.subject, identity.email)
    model = tx.model(model_id)
    audit(tx, identity, role, action, f"model v{model.version}", model_id=model_id, version=model.version,
          previous_version=previous.version if previous else None)


def activate(store: Datastore, version: int, author: str = "", identity: Identity | None = None) -> ModelRecord:
    """Make model `version` the active one (single transaction; admins only).

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    version : int
        Registry version number of the model.
    author : str, optional
        Who activated it, for the history, in local mode; signed in, the author is `identity`.
    identity : Identity, optional
        Who activates it; None: the local identity.

    Returns
    -------
    ModelRecord
        The model, now active. Nothing is written when it already was; otherwise one "activate"
        row is added to the activation history and one entry to the audit trail.

    Raises
    ------
    PermissionDenied
        When `identity` may not activate models.
    SegLoopError
        When no model has that version.
    ModelError
        When its ONNX file is missing.
    """
    identity, author = acting(identity, author)
    role = authorize(store, identity, Action.ACTIVATE)
    model = store.model_by_version(version)
    if not Path(model.onnx_path).is_file():
        raise ModelError(f"model v{version}: its ONNX file {model.onnx_path} is missing")
    with store.write() as tx:
        current = tx.active_model()
        if current is None or current.id != model.id:
            _switch(tx, model.id, AuditAction.ACTIVATE, identity, role, author)
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


def rollback(store: Datastore, author: str = "", identity: Identity | None = None) -> ModelRecord:
    """Re-activate the model that was active before the current one; repeated calls go further back (admins only).

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    author : str, optional
        Who rolled back, for the history, in local mode; signed in, the author is `identity`.
    identity : Identity, optional
        Who rolls back; None: the local identity.

    Returns
    -------
    ModelRecord
        The model active now. One "rollback" row is added to the activation history and one entry
        to the audit trail.

    Raises
    ------
    PermissionDenied
        When `identity` may not roll back.
    ModelError
        When the history holds no earlier active model.
    """
    identity, author = acting(identity, author)
    role = authorize(store, identity, Action.ROLLBACK)
    with store.write() as tx:
        stack = _activation_stack(tx.activations())
        if len(stack) < 2:
            raise ModelError("there is no earlier active model to roll back to")
        target = stack[-2]
        _switch(tx, target, AuditAction.ROLLBACK, identity, role, author)
    return store.model(target)


def activation_history(store: Datastore) -> list[dict[str, Any]]:
    """List every activation and rollback, oldest first (model_id, previous_model_id, action, author,
    author_subject, author_email, created_at).

    Parameters
    ----------
    store : Datastore
        The workspace's database.

    Returns
    -------
    list of dict
        As `Datastore.activations`.
    """
    return store.activations()


def model_metrics(model: ModelRecord) -> Metrics:
    """Return a registered model's metrics, from its card (read through the card migration) or its row.

    Parameters
    ----------
    model : ModelRecord
        A registered model.

    Returns
    -------
    Metrics
        From the card file when it exists, else from the copy in the row (empty for a model without card).

    Raises
    ------
    ModelError
        When the card file exists but is invalid.
    """
    if model.card_path and Path(model.card_path).is_file():
        return load_card(model.card_path).metrics
    return metrics_from_dict(model.metrics)
