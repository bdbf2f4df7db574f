"""The workspace's Datastore, one per workspace folder, with the shipped model registered on first use."""

from __future__ import annotations

import streamlit as st

from segloop.config import workspace_dir
from segloop.datastore import Datastore


@st.cache_resource(show_spinner=False)
def _store(workspace: str) -> Datastore:
    from segloop.model_registry import ensure_shipped_model

    store = Datastore(workspace=workspace)
    ensure_shipped_model(store)
    return store


def get_store() -> Datastore:
    """The Datastore of SEGLOOP_WORKSPACE (cached per folder); registers the shipped model as v1 when the
    registry is empty and the shipped files are present (retried on every call until they are)."""
    store = _store(str(workspace_dir()))
    if not store.models():
        from segloop.model_registry import ensure_shipped_model

        ensure_shipped_model(store)
    return store


def fmt_time(ts: float | None) -> str:
    """A timestamp as local 'YYYY-MM-DD HH:MM' (empty for None)."""
    if not ts:
        return ""
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def label_names_for(model) -> dict[int, str]:
    """Label value -> name from a registered model's card ({} when it has none)."""
    if model is None or not model.card_path:
        return {}
    try:
        from segloop.model_card import load_card

        return dict(load_card(model.card_path).label_names)
    except Exception:  # noqa: BLE001 - a broken card only loses the names
        return {}


def dice_columns(dice: dict | None, names: dict[int, str]) -> dict[str, float | None]:
    """{'Dice anterior': 0.87, ...} from a {label value (str or int): dice} mapping."""
    out: dict[str, float | None] = {}
    for k, v in (dice or {}).items():
        try:
            key = int(k)
        except (TypeError, ValueError):
            key = k
        out[f"Dice {names.get(key, k)}"] = None if v is None else round(float(v), 3)
    return out


def model_dice(model) -> dict[str, float]:
    """Validation Dice per label value ("1", "2", ...) of a registered model, from its metrics.

    Fine-tuned models store `val_dice` ({"1": ..}); the shipped card stores `validation.dice`, keyed by
    label value or by label name.
    """
    m = model.metrics or {}
    dice = m.get("val_dice")
    if dice is None and isinstance(m.get("validation"), dict):
        dice = m["validation"].get("dice")
    if not isinstance(dice, dict):
        return {}
    by_name = {n.lower(): str(v) for v, n in label_names_for(model).items()}
    out = {}
    for k, v in dice.items():
        key = str(k)
        if not key.isdigit():
            key = by_name.get(key.lower(), key)
        if isinstance(v, dict):  # {"mean": .., ...}
            v = v.get("mean")
        if isinstance(v, (int, float)):
            out[key] = float(v)
    return out


def model_validation_cases(model) -> list[str]:
    """Names of the cases a model's validation metrics were measured on (card split or metrics)."""
    m = model.metrics or {}
    if m.get("validation_cases"):
        return list(m["validation_cases"])
    if model.card_path:
        try:
            import json
            from pathlib import Path

            return list(json.loads(Path(model.card_path).read_text()).get("split", {}).get("validation") or [])
        except (OSError, ValueError):
            return []
    return []
