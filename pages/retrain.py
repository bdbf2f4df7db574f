"""Retrain: fine-tune a registered model on the corrected cases in the background and follow it live.

The run is a detached job (segloop.training.jobs); this page only reads the database and the run
folder, so it can be closed or reloaded at any time. The new model is registered, never activated.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from components import auth
from components.app_shell import ensure_app_shell
from components.charts import dice_bars, training_curves
from components.scan_picker import keep_case_in_url
from components.store import fmt_time, get_store, label_names_for
from segloop import config
from segloop.errors import SegLoopError
from segloop.model.runtime import training_unavailable
from segloop.store.identity import Action
from segloop.store.registry import list_models
from segloop.store.vocabulary import ACTIVE_RUN_STATES
from segloop.training.finetune import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    DEFAULT_ORIGINAL,
    corrected_versions,
    labelled_folder_cases,
    plan_finetune,
)
from segloop.training.jobs import cancel, run_status, start_training


@st.cache_data(show_spinner=False, ttl=60)
def _folder_cases(folder: str) -> list[str]:
    """Names of the labelled cases in the data folder (cached: listing a large folder takes a moment)."""
    return sorted(labelled_folder_cases(folder))


def render_run(store, run_id: int, was_active: bool, names: dict[int, str]) -> None:
    """Live view of one run: status, progress, curves, log, and the comparison once it has ended."""
    s = run_status(store, run_id)
    status, prog, hist = s["status"], s["progress"], s["history"]
    if was_active and status not in ACTIVE_RUN_STATES:
        st.rerun()  # it just ended: redraw the whole page (stops polling, shows the result)
    stage = (s.get("stage") or {}).get("stage", status)
    by = store.run(run_id).started_by
    st.markdown(f"**Run #{s['id']}** · status **{status}** · stage {stage} · started {fmt_time(s['started_at'])}"
                + (f" by {by}" if by else "")
                + (f" · {s['elapsed_s']:.0f} s" if s.get("elapsed_s") is not None else ""))
    epochs = int(prog.get("epochs") or s["params"].get("epochs") or 0)
    done = int(prog.get("epoch") or (len(hist.get("epoch") or [])))
    if prog.get("state") == "finished":
        done = int(prog.get("epochs_run") or done)
    if epochs:
        text = f"Epoch {done} / {epochs}"
        if hist.get("loss"):
            text += f" · loss {hist['loss'][-1]:.4f}"
        if status in ACTIVE_RUN_STATES and stage != "training":
            text += f" · {stage}"
        st.progress(min(1.0, done / epochs), text=text)
    if hist.get("epoch"):
        st.plotly_chart(training_curves(hist, names), key=f"curves_{run_id}", width="stretch")
    elif status in ACTIVE_RUN_STATES:
        st.caption(prog.get("message") or "Starting: loading the cases…")
    if status in ACTIVE_RUN_STATES:
        if s["cancel_requested"]:
            st.caption("Cancel requested: the run stops after the current epoch.")
        else:
            identity = auth.current_identity()
            may_cancel = auth.allowed(Action.TRAIN, identity)
            if st.button("Cancel run", key=f"cancel_{run_id}", disabled=not may_cancel,
                         help=None if may_cancel else auth.needs(Action.TRAIN)):
                cancel(store, run_id, identity=identity)  # returns at once; this fragment follows the run to its end
                st.rerun()
    elif status == "failed":
        st.error(f"Run #{run_id} failed: {s['error']}")
    elif status == "cancelled":
        st.warning(f"Run #{run_id} was cancelled; the registry is unchanged.")
    elif status == "finished":
        ev = s.get("evaluation") or {}
        new_id = s.get("result_model_id")
        new = store.model(new_id) if new_id else None
        if ev:
            pv = ev.get("parent_version")
            nv = new.version if new else "new"
            labels = sorted(ev["new"]["mean_dice"], key=lambda k: (len(k), k))
            rows = [{"Label": names.get(int(k), k), f"Parent v{pv}": round(ev["parent"]["mean_dice"][k], 4),
                     f"New v{nv}": round(ev["new"]["mean_dice"][k], 4),
                     "Change": round(ev["new"]["mean_dice"][k] - ev["parent"]["mean_dice"][k], 4)} for k in labels]
            rows.append({"Label": "mean", f"Parent v{pv}": round(ev["parent"]["mean_dice_all"], 4),
                         f"New v{nv}": round(ev["new"]["mean_dice_all"], 4),
                         "Change": round(ev["delta_mean_dice"], 4)})
            st.markdown(f"**Validation Dice on the same {len(ev['new'].get('cases', []))} fixed validation cases**")
            st.dataframe(pd.DataFrame(rows), hide_index=True, key=f"compare_{run_id}")
            st.plotly_chart(dice_bars([{"model": f"parent v{pv}", "dice": ev["parent"]["mean_dice"]},
                                       {"model": f"new v{nv}", "dice": ev["new"]["mean_dice"]}], names,
                                      title="Validation Dice per label: parent vs new"),
                            key=f"compare_chart_{run_id}", width="stretch")
        if new is not None:
            st.success(f"Registered as version {new.version}, NOT activated: the active model is unchanged. "
                       "Compare and activate it on the Models page.")
            try:
                st.page_link("pages/models.py", label="Open Models", icon=":material/hub:")
            except Exception:  # noqa: BLE001 - page not registered in a single-page run
                st.markdown("[Open Models](models)")
    if s.get("log_tail"):
        with st.expander("Log", expanded=status == "failed"):
            st.code(s["log_tail"][-4000:], language="text")


ensure_app_shell()
keep_case_in_url()  # the address bar keeps naming the session's current case
st.title("Retrain")
store = get_store()
models = [m for m in list_models(store) if m.checkpoint_path and Path(m.checkpoint_path).is_file()]
active = store.active_model()
names = label_names_for(active or (models[0] if models else None))
runs = store.runs()
current = runs[-1] if runs else None
if current is not None and current.status in ACTIVE_RUN_STATES:
    current = store.run(run_status(store, current.id)["id"])  # notices a job that died

st.subheader("New fine-tuning run")
no_training = training_unavailable()  # a slim install (the Space's) views and segments, but cannot train
if no_training:
    st.warning(no_training, icon=":material/block:")
if not models:
    st.info("No registered model has a torch checkpoint to fine-tune from (weights/hippocampus-unet-v1.pt).")
    st.stop()
default_base = next((i for i, m in enumerate(models) if active and m.id == active.id), len(models) - 1)
base = st.selectbox("Base model", models, index=default_base, key="base_model",
                    format_func=lambda m: f"v{m.version} · {m.name}" + (" (active)" if m.active else ""))

corrected = corrected_versions(store)
scan_names = {sid: store.scan(sid).name for sid in corrected}
repeated = {n for n in scan_names.values() if list(scan_names.values()).count(n) > 1}
chosen = st.multiselect("Corrected and approved cases to train on", sorted(corrected, key=lambda i: (scan_names[i], i)),
                        default=sorted(corrected), key="train_cases", help="The newest correction or approval of each case.",
                        format_func=lambda i: f"{scan_names[i]} (#{i})" if scan_names[i] in repeated else scan_names[i])
if not corrected:
    st.caption("No corrected cases yet: correct predictions on the Segment page, or train on original data only.")

folder = config.data_dir()
n_folder = 0
if folder is not None:
    try:
        n_folder = len(_folder_cases(str(folder)))
    except SegLoopError as exc:
        st.warning(f"Data folder: {exc}")
        folder = None
c1, c2, c3, c4 = st.columns(4)
with c1:
    use_original = st.checkbox("Also train on original training data", value=False, key="use_original",
                               disabled=not n_folder,
                               help="Mixing in cases the base model was trained on guards against forgetting.")
with c2:
    n_original = st.number_input("Original cases", min_value=1, max_value=max(1, n_folder),
                                 value=min(DEFAULT_ORIGINAL, max(1, n_folder)), key="n_original",
                                 disabled=not use_original)
with c3:
    epochs = st.number_input("Epochs", min_value=1, max_value=500, value=DEFAULT_EPOCHS, key="epochs")
with c4:
    lr = st.number_input("Learning rate", min_value=1e-6, max_value=1e-2, value=DEFAULT_LR, step=1e-4,
                         format="%.1e", key="lr", help="Small: fine-tuning adjusts, it does not start over.")
with st.expander("More settings"):
    batch_size = st.number_input("Batch size", min_value=1, max_value=16, value=DEFAULT_BATCH_SIZE, key="batch_size")
    augment = st.checkbox("Augmentation", value=True, key="augment")
    val_every = st.number_input("Score the validation set every N epochs (curve only)", min_value=0,
                                max_value=500, value=max(1, DEFAULT_EPOCHS // 5), key="val_every",
                                help="0: only at the end. The score never picks a checkpoint: the last epoch's "
                                     "weights are the new model.")

try:
    plan = plan_finetune(store, base, cases=chosen, data_dir=folder, n_original=int(n_original) if use_original else 0,
                         epochs=int(epochs), lr=float(lr), batch_size=int(batch_size), augment=bool(augment),
                         val_every=int(val_every) or None)
except SegLoopError as exc:
    st.error(str(exc))
    st.stop()
if plan.validation:
    st.caption(f"Fixed validation set: {len(plan.validation)} cases of v{base.version}'s validation split "
               f"(found in the data folder, none of them trained on): the parent and the new model are both "
               f"scored on them.")
if plan.missing_validation and n_folder:
    st.caption(f"{len(plan.missing_validation)} validation cases of the card are not in the data folder and are left out.")
problems = plan.problems()
if not plan.validation:
    st.warning(problems[-1])

identity = auth.current_identity()
may_train = auth.allowed(Action.TRAIN, identity)
if not may_train:
    st.caption(f"Starting and cancelling training runs: {auth.needs(Action.TRAIN).lower()}")
if st.button("Start training", key="start_btn", type="primary",
             disabled=not plan.validation or not may_train or bool(no_training), help=no_training):
    if no_training:
        st.error(no_training)
    elif problems:
        st.error(problems[0])
    else:
        try:
            rid = start_training(store, plan.params, identity=identity)
            st.session_state["retrain_flash"] = f"Run #{rid} started in the background."
            st.rerun()
        except SegLoopError as exc:
            st.error(str(exc))
if flash := st.session_state.pop("retrain_flash", None):
    st.success(flash)

if current is not None:
    st.subheader("Latest run")
    was_active = current.status in ACTIVE_RUN_STATES
    live = st.fragment(run_every=2.0 if was_active else None)(render_run)
    live(store, current.id, was_active, names)
    if len(runs) > 1:
        with st.expander(f"Earlier runs ({len(runs) - 1})"):
            st.dataframe(pd.DataFrame([{"Run": r.id, "Status": r.status, "Started": fmt_time(r.started_at),
                                        "By": r.started_by, "Epochs": r.params.get("epochs"),
                                        "Result": r.result_model_id, "Error": r.error or ""}
                                       for r in reversed(runs[:-1])]),
                         hide_index=True, key="runs_table")
