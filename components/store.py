"""The workspace's Datastore, one per workspace folder, with the shipped model registered on first use."""

from __future__ import annotations

import streamlit as st

from segloop.config import workspace_dir
from segloop.store.database import Datastore


@st.cache_resource(show_spinner=False)
def _store(workspace: str) -> Datastore:
    from segloop.store.registry import ensure_shipped_model

    store = Datastore(workspace=workspace)
    ensure_shipped_model(store)
    return store


def get_store() -> Datastore:
    """The Datastore of SEGLOOP_WORKSPACE (cached per folder); registers the shipped model as v1 when the
    registry is empty and the shipped files are present (retried on every call until they are)."""
    store = _store(str(workspace_dir()))
    if not store.models():
        from segloop.store.registry import ensure_shipped_model

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
        from segloop.model.card import load_card

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
