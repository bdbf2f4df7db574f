"""Run the active model on the current scan once per (scan, model, path) and remember the result in the
scan's own state (`ScanState.predictions`, keyed by the scan's content id, never its name).

The active model comes from the registry in the workspace (the shipped model is registered on first
use); if the registry cannot be used, the shipped weights are run directly. The prediction is saved
in the datastore as a 'model' label version with its uncertainty map (segloop.editing.selections).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st

from components import session
from components.scan_state import BoxPlacement

CALLS_KEY = "seg_predict_calls"


@dataclass
class ModelChoice:
    """The model the page runs: file, registry id (None when the registry is unusable) and a readable name."""

    path: Path
    model_id: int | None
    title: str
    sha: str
    note: str = ""


@dataclass
class CachedPrediction:
    """What the page keeps of one prediction (the label array is read-only; edits work on a copy)."""

    labels: np.ndarray
    levels: np.ndarray  # uint8 uncertainty bins (segloop.editing.selections.uncertainty_levels)
    mean_uncertainty: float
    provider: str
    provider_note: str
    seconds: float
    warnings: list[str]
    names: dict[int, str]
    colors: dict[int, str]
    model_id: int | None
    model_title: str
    version_id: int | None = None
    version: int | None = None
    kind: str = "crop"  # the path taken: "crop" or "whole head"
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step
    sides: list = field(default_factory=list)  # whole head: segloop.wholehead.segment.SideResult per hemisphere
    report: dict = field(default_factory=dict)  # segloop.wholehead.segment.volume_report row
    verdict: str = ""  # whole head: the quality check's accept / warn
    placed_by: str = ""  # whole head: "software" or "person"


@st.cache_data(show_spinner=False, max_entries=16)
def _sha(path: str, _key: str) -> str:
    from segloop.model.card import file_sha256

    return file_sha256(path)


def store():
    """The workspace's datastore (SEGLOOP_WORKSPACE)."""
    from segloop.store.database import Datastore

    return Datastore()


def active_model() -> ModelChoice:
    """The registry's active model, else the shipped weights (with a note saying why)."""
    from segloop.model.inference import default_model_path

    try:
        from segloop.store.registry import active_model as registry_active
        from segloop.store.registry import ensure_shipped_model

        ds = store()
        ensure_shipped_model(ds)
        rec = registry_active(ds)
        if rec is not None and Path(rec.onnx_path).is_file():
            key = session.file_key(rec.onnx_path)
            return ModelChoice(Path(rec.onnx_path), rec.id, f"{rec.name} v{rec.version}", _sha(rec.onnx_path, key))
        note = "no active model in the registry; using the shipped model"
    except Exception as exc:  # registry unusable: fall back to the shipped file
        note = f"model registry unavailable ({exc}); using the shipped model"
    path = default_model_path()
    return ModelChoice(path, None, path.stem, _sha(str(path), session.file_key(path)) if path.is_file() else "", note)


def model_labels(model: ModelChoice) -> tuple[dict[int, str], dict[int, str]]:
    """(names, colours) of the model's foreground labels, from its card."""
    from segloop.model.card import card_path_for, load_card

    try:
        card = load_card(card_path_for(model.path))
    except Exception:
        return session.label_names() or {1: "label 1"}, {}
    fg = card.foreground_labels
    return {lab.value: lab.name for lab in fg}, {lab.value: lab.color for lab in fg}


def cache_key(model: ModelChoice, mode: str = "auto", placement: BoxPlacement = BoxPlacement()) -> str:
    """Key of a prediction in its scan's `ScanState.predictions`: the model's file digest, the path and where
    a person put the boxes."""
    return f"{model.sha}|{mode}|{placement.key}"


def cached_prediction(model: ModelChoice, mode: str = "auto") -> CachedPrediction | None:
    """The prediction of the current scan (by its identity) by this model, on the path `mode` asks for, with
    the boxes where the scan's placement says, made earlier in the session; None when there is none."""
    state = session.current()
    return None if state is None else state.predictions.get(cache_key(model, mode, state.placement))


def run_prediction(model: ModelChoice, mode: str = "auto") -> CachedPrediction:
    """Segment the current scan with `model` (once per scan, model and mode), record it, keep it in the scan's state.

    `mode` is a `segloop.wholehead.segment.Mode`: "auto" takes the whole-head path for a whole head.
    The result is saved in the workspace as a model version of the scan whose voxels were segmented.
    """
    from segloop.display.overlays import uncertainty_levels
    from segloop.store.predictions import record_model_output
    from segloop.wholehead.segment import RegistrationRefused, segment_scan, volume_report

    found = cached_prediction(model, mode)
    if found is not None:
        return found
    state, vol = session.current(), session.current_volume()
    st.session_state[CALLS_KEY] = st.session_state.get(CALLS_KEY, 0) + 1
    placement = state.placement
    try:
        seg = segment_scan(vol, model.path, mode, accept_registration=placement.accept,
                           box_shifts_mm=placement.shift_map(), registration=state.registration)
    except RegistrationRefused as exc:  # kept for the QC picture and a person's say
        state.registration = exc.registration
        raise
    state.registration = seg.registration
    labels = np.ascontiguousarray(seg.labels, dtype=np.uint8)
    labels.setflags(write=False)
    fg = seg.card.foreground_labels
    result = CachedPrediction(
        labels=labels,
        levels=uncertainty_levels(seg.uncertainty),
        mean_uncertainty=seg.mean_foreground_uncertainty,
        provider=seg.provider,
        provider_note=seg.provider_note,
        seconds=float(seg.seconds),
        warnings=list(seg.warnings),
        names={lab.value: lab.name for lab in fg},
        colors={lab.value: lab.color for lab in fg},
        model_id=model.model_id,
        model_title=model.title,
        kind=str(seg.kind),
        timings=dict(seg.timings),
        sides=list(seg.sides),
        report=volume_report(state.name, seg),
        verdict=str(seg.verdict or ""),
        placed_by=str(seg.placed_by or ""),
    )
    try:
        ds = store()
        scan = scan_record()
        if scan is None:
            raise RuntimeError("the scan could not be registered")
        note = f"{model.title} prediction"
        if placement.by_person:  # the version says a person placed the boxes, and how
            note += "; boxes placed by a person: " + "; ".join(
                (["registration accepted although the check refused it"] if placement.accept else [])
                + [f"{side} box moved ({', '.join(f'{v:+g}' for v in d)}) mm" for side, d in placement.shifts])
        version, _ = record_model_output(ds, scan, vol, labels, seg.uncertainty, model.model_id, note=note)
        result.version_id, result.version = version.id, version.version
    except Exception as exc:  # the prediction is still usable; say why it was not stored
        result.warnings.append(f"the prediction could not be saved in the workspace: {exc}")
    state.predictions[cache_key(model, mode, placement)] = result
    return result


def _reference_label_path(case: str) -> str | None:
    """The data folder's label file of a case (recorded as the scan's reference), if any."""
    if session.current_source() != "data folder":
        return None
    try:
        from segloop.config import data_dir
        from segloop.data.folders import resolve_case

        folder = data_dir()
        return resolve_case(folder, case).label_path if folder else None
    except Exception:
        return None


def scan_record():
    """The datastore record of the current scan, found by its content id (registered on first use), or None
    when that fails. Its id is remembered in the scan's state."""
    from segloop.store.predictions import ensure_scan

    state = session.current()
    if state is None:
        return None
    try:
        if state.workspace_id is not None:  # registered before: no need to hash the voxels again
            rec = store().scan(state.workspace_id)
            if rec.sha256 == state.key:
                return rec
        rec = ensure_scan(store(), state.name, session.current_volume(), state.source,
                          _reference_label_path(state.name))
    except Exception:
        return None
    if rec.sha256 != state.key:  # ensure_scan finds scans by content: anything else is a bug, never saved to
        return None
    state.workspace_id = rec.id
    return rec


def volume_rows(pred: CachedPrediction | None, labels: np.ndarray | None, spacing, names: dict[int, str]) -> list[dict]:
    """Rows of the volume table: each label's volume in the model's output and in the current labels (mL).

    Call it after the edits of this run were applied (`editor.process_selections`), so the numbers
    are those of the labels on screen.
    """
    from segloop.display.label_volumes import label_volumes_ml

    model_rows = {r["label"]: r for r in label_volumes_ml(pred.labels, spacing, names)} if pred else {}
    cur_rows = {r["label"]: r for r in label_volumes_ml(labels, spacing, names)} if labels is not None else {}
    return [{"Label": v, "Name": names.get(v, f"label {v}"),
             "Model (mL)": round(model_rows[v]["ml"], 3) if v in model_rows else None,
             "Current (mL)": round(cur_rows[v]["ml"], 3) if v in cur_rows else 0.0}
            for v in sorted(set(model_rows) | set(cur_rows))]
