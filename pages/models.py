"""Models: the registry's versions and their lineage; their metrics side by side on one evaluation at a time
(the same cases, scored the same way: `segloop.model.evaluations`); activation and rollback."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from components import auth
from components.app_shell import ensure_app_shell
from components.charts import dice_bars
from components.scan_picker import keep_case_in_url
from components.store import fmt_time, get_store, label_names_for
from segloop.errors import SegLoopError
from segloop.model.card import load_card, training_data_summary
from segloop.model.evaluations import group_by_evaluation
from segloop.store.identity import Action
from segloop.store.registry import activate, activation_history, list_models, model_metrics, rollback


def _data_used(model) -> str:
    try:
        return training_data_summary(load_card(model.card_path)) if model.card_path else ""
    except SegLoopError:
        return ""


def _measured_on(metrics) -> str:
    """What a version's own validation figures were measured on (protocol and number of cases)."""
    val = metrics.validation
    if val is None or not val.dice:
        return ""
    return f"{val.protocol or 'unnamed evaluation'} · {len(val.cases)} case" + ("" if len(val.cases) == 1 else "s")


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
metrics = {m.version: model_metrics(m) for m in models}  # read each card once
identity = auth.current_identity()
trained_by = {r.result_model_id: r.started_by for r in store.runs() if r.result_model_id and r.started_by}

st.dataframe(pd.DataFrame([
    {"Version": m.version, "Active": "● active" if m.active else "", "Name": m.name,
     "Parent": f"v{by_id[m.parent_id].version}" if m.parent_id in by_id else "—",
     "Created": fmt_time(m.created_at), "Data used": _data_used(m),
     "Validated on": _measured_on(metrics[m.version]), "Note": m.note}
    | ({"Trained by": trained_by.get(m.id, "")} if trained_by else {})
    for m in models]), hide_index=True, key="models_table", width="stretch")

# --------------------------------------------------------------------------- fair comparison
st.subheader("Compare on one evaluation")
groups = group_by_evaluation(metrics,
                             {m.version: by_id[m.parent_id].version if m.parent_id in by_id else None for m in models})
if not groups:
    st.caption("No version has validation figures yet.")
else:
    by_key = {g.key: g for g in groups}
    # the evaluation shared by the most versions, until the user picks another (then theirs, while it exists)
    picked = st.session_state.get("models_evaluation")
    if picked not in by_key or picked == st.session_state.get("_models_evaluation_default"):
        st.session_state["models_evaluation"] = groups[0].key
    st.session_state["_models_evaluation_default"] = groups[0].key
    group = by_key[st.selectbox(
        "Evaluation", list(by_key), key="models_evaluation",
        format_func=lambda k: f"{by_key[k].title} — " + ", ".join(f"v{v}" for v in by_key[k].versions),
        help="Versions are only compared on the same cases, scored the same way: the figures of one "
             "evaluation are never set beside another's.")]
    missing = [f"v{m.version}" for m in models if m.version not in group.scores]
    st.caption(f"Shown: **{group.title}**. "
               + (f"No figures on this evaluation for {', '.join(missing)}." if missing
                  else "Every version has figures on this evaluation."))
    rows = []
    for v, ev in group.scores.items():
        row = {"Version": f"v{v}" + (" (active)" if active and active.version == v else "")}
        row.update({f"Dice {name}": round(d, 3) for name, d in ev.dice.items()})
        row["Mean Dice"] = round(ev.mean_dice, 3) if ev.mean_dice is not None else None
        row["Figures from"] = group.sources[v]
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="models_eval_table", width="stretch")
    bars = [{"model": r["Version"], "dice": ev.dice} for r, ev in zip(rows, group.scores.values())]
    st.plotly_chart(dice_bars(bars, names, title=f"Dice per label · {group.title}"), key="models_dice_chart",
                    width="stretch")
    st.caption("A fine-tuned version is scored on its run's fixed validation set, where its parent is scored "
               "too; the shipped model on its own validation split, which also chose its training epoch.")

st.subheader("Activate or roll back")
st.caption(f"Active now: v{active.version} ({active.name})" if active else "No model is active.")
may_activate, may_rollback = auth.allowed(Action.ACTIVATE, identity), auth.allowed(Action.ROLLBACK, identity)
if not may_activate:
    st.caption(f"Activating and rolling back: {auth.needs(Action.ACTIVATE).lower()}")
col_v, col_a, col_r = st.columns([2, 1, 1])
with col_v:
    versions = [m.version for m in models]
    pick = st.selectbox("Version", versions, index=len(versions) - 1, key="activate_version",
                        format_func=lambda v: f"v{v}" + (" (active)" if active and active.version == v else ""))
with col_a:
    st.write("")
    if st.button("Activate", key="activate_btn", type="primary",
                 disabled=bool(active and active.version == pick) or not may_activate):
        try:
            activate(store, int(pick), author=auth.author_name(), identity=identity)
            st.session_state["models_flash"] = f"v{pick} is now the active model: new predictions use it."
            st.rerun()
        except SegLoopError as exc:
            st.error(str(exc))
with col_r:
    st.write("")
    if st.button("Roll back", key="rollback_btn", help="Re-activate the model that was active before this one",
                 disabled=not may_rollback):
        try:
            m = rollback(store, author=auth.author_name(), identity=identity)
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
