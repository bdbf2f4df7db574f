"""Run the active model on the current scan once per (scan, model) and remember the result in the session.

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

PREDICTIONS_KEY = "seg_predictions"
CALLS_KEY = "seg_predict_calls"
MAX_CACHED = 4


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


def cache_key(case: str, model: ModelChoice, mode: str = "auto") -> str:
    return f"{case}|{model.sha}|{mode}"


def cached_prediction(case: str | None, model: ModelChoice, mode: str = "auto") -> CachedPrediction | None:
    """The prediction of this scan by this model (on the path `mode` asks for) made earlier in the session."""
    if not case:
        return None
    return st.session_state.get(PREDICTIONS_KEY, {}).get(cache_key(case, model, mode))


def run_prediction(case: str, model: ModelChoice, mode: str = "auto") -> CachedPrediction:
    """Segment the current scan with `model` (once per scan, model and mode), record it, cache it in the session.

    `mode` is a `segloop.wholehead.segment.Mode`: "auto" takes the whole-head path for a whole head.
    """
    from segloop.display.overlays import uncertainty_levels
    from segloop.store.predictions import ensure_scan, record_model_output
    from segloop.wholehead.segment import segment_scan, volume_report

    found = cached_prediction(case, model, mode)
    if found is not None:
        return found
    vol = session.current_volume()
    st.session_state[CALLS_KEY] = st.session_state.get(CALLS_KEY, 0) + 1
    seg = segment_scan(vol, model.path, mode)
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
        report=volume_report(case, seg),
    )
    try:
        ds = store()
        scan = ensure_scan(ds, case, vol, session.current_source(), _reference_label_path(case))
        version, _ = record_model_output(ds, scan, vol, labels, seg.uncertainty, model.model_id,
                                         note=f"{model.title} prediction")
        result.version_id, result.version = version.id, version.version
    except Exception as exc:  # the prediction is still usable; say why it was not stored
        result.warnings.append(f"the prediction could not be saved in the workspace: {exc}")
    cache = st.session_state.setdefault(PREDICTIONS_KEY, {})
    cache[cache_key(case, model, mode)] = result
    while len(cache) > MAX_CACHED:
        cache.pop(next(iter(cache)))
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


def scan_record(case: str):
    """The datastore record of the current scan (registered on first use), or None when that fails."""
    from segloop.store.predictions import ensure_scan

    try:
        return ensure_scan(store(), case, session.current_volume(), session.current_source(),
                           _reference_label_path(case))
    except Exception:
        return None


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
