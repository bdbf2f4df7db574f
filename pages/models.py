"""Models: the registry's versions, their lineage and metrics side by side, activation and rollback."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from components.app_shell import ensure_app_shell
from components.charts import dice_bars
from components.scan_picker import keep_case_in_url
from components.store import fmt_time, get_store, label_names_for
from segloop.errors import SegLoopError
from segloop.model.card import Evaluation, load_card, training_data_summary
from segloop.store.registry import activate, activation_history, list_models, model_metrics, rollback


def _author() -> str:
    return (st.session_state.get("seg_author_name") or os.environ.get("USER") or "").strip()


def _data_used(model) -> str:
    try:
        return training_data_summary(load_card(model.card_path)) if model.card_path else ""
    except SegLoopError:
        return ""


ensure_app_shell()
keep_case_in_url()  # the address bar keeps naming the session's current case
st.title("Models")
if flash := st.session_state.pop("models_flash", None):
    st.success(flash)
store = get_store()
models = list_models(store)
if not models:
    st.info("The registry is empty and the shipped model (weights/hippocampus-unet-v1.onnx) was not found.")
    st.stop()
by_id = {m.id: m for m in models}
active = store.active_model()
names = label_names_for(active or models[0])

rows = []
for m in models:
    val = model_metrics(m).validation
    dice = val.dice if val else {}
    row = {"Version": m.version, "Active": "● active" if m.active else "", "Name": m.name,
           "Parent": f"v{by_id[m.parent_id].version}" if m.parent_id in by_id else "—",
           "Created": fmt_time(m.created_at), "Data used": _data_used(m)}
    for name, d in dice.items():
        row[f"Dice {name}"] = round(d, 3)
    row["Mean Dice"] = round(val.mean_dice, 3) if val and val.mean_dice is not None else None
    parent = model_metrics(m).parent_validation
    row["Parent mean Dice, same cases"] = round(parent.mean_dice, 3) if parent and parent.mean_dice is not None else None
    row["Validation cases"] = len(val.cases) if val else None
    row["Measured on"] = val.protocol if val else ""
    row["Note"] = m.note
    rows.append(row)
st.dataframe(pd.DataFrame(rows), hide_index=True, key="models_table", width="stretch")
st.caption("A fine-tuned version's Dice is measured on its run's fixed validation set, where its parent was "
           "scored too (see the parent's Dice in its card); the shipped model's on its own validation split.")

bars = [{"model": f"v{m.version}" + (" (active)" if m.active else ""),
         "dice": (model_metrics(m).validation or Evaluation()).dice} for m in models]
if any(b["dice"] for b in bars):
    st.plotly_chart(dice_bars(bars, names), key="models_dice_chart", width="stretch")

st.subheader("Activate or roll back")
st.caption(f"Active now: v{active.version} ({active.name})" if active else "No model is active.")
col_v, col_a, col_r = st.columns([2, 1, 1])
with col_v:
    versions = [m.version for m in models]
    pick = st.selectbox("Version", versions, index=len(versions) - 1, key="activate_version",
                        format_func=lambda v: f"v{v}" + (" (active)" if active and active.version == v else ""))
with col_a:
    st.write("")
    if st.button("Activate", key="activate_btn", type="primary", disabled=bool(active and active.version == pick)):
        try:
            activate(store, int(pick), author=_author())
            st.session_state["models_flash"] = f"v{pick} is now the active model: new predictions use it."
            st.rerun()
        except SegLoopError as exc:
            st.error(str(exc))
with col_r:
    st.write("")
    if st.button("Roll back", key="rollback_btn", help="Re-activate the model that was active before this one"):
        try:
            m = rollback(store, author=_author())
            st.session_state["models_flash"] = f"Rolled back: v{m.version} is the active model again."
            st.rerun()
        except SegLoopError as exc:
            st.error(str(exc))

history = activation_history(store)
if history:
    st.subheader("Activation history")
    st.dataframe(pd.DataFrame([
        {"When": fmt_time(h["created_at"]), "Action": h["action"],
         "Model": f"v{by_id[h['model_id']].version}" if h["model_id"] in by_id else h["model_id"],
         "Previous": f"v{by_id[h['previous_model_id']].version}" if h["previous_model_id"] in by_id else "—",
         "By": h["author"]} for h in reversed(history)]),
        hide_index=True, key="activations_table", width="stretch")

st.subheader("Downloads")
for m in reversed(models):
    cols = st.columns([1, 2, 2])
    cols[0].markdown(f"**v{m.version}**" + (" (active)" if m.active else ""))
    onnx = Path(m.onnx_path)
    if onnx.is_file():
        # data as a callable: the file is read only when the user clicks, not on every rerun
        cols[1].download_button(f"ONNX · {onnx.name}", data=onnx.read_bytes, file_name=f"v{m.version}-{onnx.name}",
                                mime="application/octet-stream", key=f"dl_onnx_{m.version}", on_click="ignore")
    if m.card_path and Path(m.card_path).is_file():
        cols[2].download_button(f"Card · {Path(m.card_path).name}", data=Path(m.card_path).read_bytes,
                                file_name=f"v{m.version}-{Path(m.card_path).name}", mime="application/json",
                                key=f"dl_card_{m.version}", on_click="ignore")
