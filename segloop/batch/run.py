"""One batch, end to end: inputs -> skip what is done -> engine -> workspace -> report.

`run_batch` is what ``python -m segloop batch`` runs. The parent process lists the jobs, decides which
can be skipped (`segloop.batch.records.is_done`), shows one progress line (done/total, scans/s, ETA)
on stderr, registers finished scans in the workspace when asked (SQLite is written by this process
only, never by workers) and rewrites the report from the status records at the end.
"""

from __future__ import annotations

import hashlib
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
from filelock import FileLock, Timeout
from tqdm import tqdm

from segloop.batch.engines import ENGINES, run_local, run_ray, threads_per_worker
from segloop.batch.inputs import InputPlan, Job, expand_inputs
from segloop.batch.records import OK, is_done, label_path, read_status, uncertainty_path, write_report
from segloop.batch.worker import usable_cores
from segloop.errors import SegLoopError
from segloop.io.readers import load_label, load_scan
from segloop.model.card import ModelCard, card_path_for, load_card
from segloop.model.inference import default_model_path
from segloop.store.database import Datastore
from segloop.store.predictions import ensure_scan, record_model_output
from segloop.store.registry import ensure_shipped_model
from segloop.wholehead.segment import Mode

#: Threads hashing inputs to decide what a rerun may skip (hashlib releases the GIL on large reads).
HASH_THREADS = 4
#: Held in the output folder for the whole run: one batch per output folder at a time.
LOCK_NAME = ".batch.lock"


@dataclass
class BatchOptions:
    """What `python -m segloop batch` was asked to do.

    Attributes
    ----------
    out : pathlib.Path
        Output folder: label maps, ``status/``, ``uncertainty/`` (with a workspace) and the report.
    engine : {"local", "ray"}
    workers : int or None
        Worker processes (local; default: the cores) or Ray actors (default: one per GPU, else per CPU).
    address : str or None
        Ray cluster address (``"auto"``); None starts a local Ray.
    mode : str
        "auto", "crop" or "whole-head" (`segloop.wholehead.segment.Mode`).
    model : str or None
        ONNX model (default: the shipped one, or the workspace's active model with a workspace).
    report : pathlib.Path or None
        Report CSV (default ``<out>/volumes.csv``).
    workspace : str or None
        None: register nothing; "": the default workspace (SEGLOOP_WORKSPACE or ~/.segloop); else its folder.
    progress : bool
        Show the progress line on stderr.
    accept_registration : bool
        Segment whole heads whose registration was refused on its match alone (a person looked).
    qc_dir : pathlib.Path or None
        Write each whole head's QC picture there (`segloop.wholehead.qc.write_qc`).
    """

    out: Path
    engine: str = "local"
    workers: int | None = None
    address: str | None = None
    mode: str = Mode.AUTO.value
    model: str | None = None
    report: Path | None = None
    workspace: str | None = None
    progress: bool = True
    accept_registration: bool = False
    qc_dir: Path | None = None

    @property
    def report_path(self) -> Path:
        return Path(self.report) if self.report else Path(self.out) / "volumes.csv"


@dataclass
class BatchResult:
    """What a batch did.

    Attributes
    ----------
    total : int
        Scans in the inputs.
    skipped : int
        Of those, already done by an earlier run (same input bytes, outputs present) and not redone.
    ok, failed : int
        Scans that end this run with a label map / with a failed record (skipped ones count as ok).
    failures : list of (str, str)
        (name, reason) of each failed scan.
    report : pathlib.Path
        The report written.
    report_rows : int
        Rows in it (every status record in the output folder, this run's and earlier ones').
    seconds : float
        Wall time of the run.
    rate : float
        Scans segmented per second (skipped ones not counted).
    engine : dict
        Engine facts (workers, threads, Ray layout).
    notes : list of str
        Naming notes (collisions renamed, duplicates dropped).
    registered : int
        Scans whose prediction was recorded in the workspace in this run.
    workspace_errors : list of (str, str)
        (name, reason) of scans segmented but not recorded in the workspace.
    """

    total: int = 0
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    report: Path | None = None
    report_rows: int = 0
    seconds: float = 0.0
    rate: float = 0.0
    engine: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    registered: int = 0
    workspace_errors: list[tuple[str, str]] = field(default_factory=list)


def _file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class WorkspaceRecorder:
    """Records finished scans in a workspace (this process only): the scan, a 'model' label version,
    the uncertainty map and the prediction row the Cases page's review queue ranks by.

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    model_id : int
        Registered model that made the predictions.
    """

    def __init__(self, store: Datastore, model_id: int):
        self.store, self.model_id = store, model_id
        self.predicted = {p.scan_id for p in store.predictions(model_id)}
        self.out: Path | None = None

    def record(self, record: dict, job: Job) -> bool:
        """Record one ok scan unless this model's prediction of it is already there; True when recorded.

        The scan is read again here (its identity is its voxels and geometry), the label map and the
        uncertainty map from the batch's output folder (`out`, set by `run_batch`; the record's own paths
        otherwise).
        """
        known = self.store.scan_by_content(record["content_id"]) if record.get("content_id") else None
        if known is not None and known.id in self.predicted:
            return False
        volume = load_scan(record["input"])
        scan = ensure_scan(self.store, record["name"], volume, "data folder", job.reference)
        if scan.id in self.predicted:
            return False
        out = self.out or Path(record["output"]).parent
        labels = load_label(label_path(out, record["name"]), reference=volume).array
        with np.load(uncertainty_path(out, record["name"])) as npz:
            uncertainty = npz["uncertainty"].astype(np.float32)
        record_model_output(self.store, scan, volume, labels, uncertainty, self.model_id, note=f"batch {out}")
        self.predicted.add(scan.id)
        return True


def resolve_model(model: str | None, workspace: str | None) -> tuple[Path, ModelCard, WorkspaceRecorder | None]:
    """The model a batch runs, its card, and the workspace recorder when a workspace is asked for.

    Without a workspace: `model`, else the shipped model. With one: its active model (the shipped model
    is registered first in an empty workspace); a `model` given too must be a registered one (same ONNX
    bytes), since the review queue ranks predictions by the model that made them.

    Raises
    ------
    SegLoopError
        When the model or its card is missing or invalid, the workspace has no active model, or `model`
        is not registered in the workspace.
    """
    recorder = None
    if workspace is None:
        path = Path(model) if model else default_model_path()
    else:
        store = Datastore(workspace=workspace or None)
        active = ensure_shipped_model(store)
        if model is None:
            if active is None:
                raise SegLoopError(f"the workspace {store.workspace} has no active model; activate one on the "
                                   "Models page or give --model")
            path, model_id = Path(active.onnx_path), active.id
        else:
            path = Path(model)
            if not path.is_file():
                raise SegLoopError(f"model file not found: {path}")
            digest = _file_sha256(path)
            match = [m for m in store.models() if Path(m.onnx_path).is_file() and _file_sha256(m.onnx_path) == digest]
            if not match:
                raise SegLoopError(f"{path.name} is not registered in the workspace {store.workspace}; register it "
                                   "on the Models page, or leave out --model to use the active model")
            model_id = match[-1].id
        recorder = WorkspaceRecorder(store, model_id)
    if not path.is_file():
        raise SegLoopError(f"model file not found: {path}")
    return path.resolve(), load_card(card_path_for(path)), recorder


def _skippable(plan: InputPlan, out: Path, card: ModelCard, mode: str, need_uncertainty: bool) -> list[dict | None]:
    """The record of each job that a rerun may skip (None: segment it)."""
    model = f"{card.name} v{card.version}"

    def check(job: Job) -> dict | None:
        record = read_status(out, job.name)
        if record is None or record.get("model") != model or record.get("mode") != mode:
            return None  # another model or mode asked for: segment again
        return record if is_done(record, job.path, out, need_uncertainty) else None

    with ThreadPoolExecutor(HASH_THREADS) as pool:
        return list(pool.map(check, plan.jobs))


def run_batch(inputs: list[str], options: BatchOptions, stderr: TextIO | None = None) -> BatchResult:
    """Segment every scan of `inputs` that is not already done, then rewrite the report.

    Parameters
    ----------
    inputs : list of str
        Files, folders, glob patterns, CSV manifests (`segloop.batch.inputs.expand_inputs`).
    options : BatchOptions
    stderr : text stream, optional
        Where the progress line, notes and per-scan errors go (default: sys.stderr).

    Returns
    -------
    BatchResult

    Raises
    ------
    SegLoopError
        Before anything is segmented: unusable inputs, model or workspace, an unknown engine, Ray
        missing or unreachable, another batch writing to the same output folder. While running: only
        when worker processes keep dying (`segloop.batch.engines.run_local`). Never for a bad scan:
        that is a failed record and a report row.

    Notes
    -----
    Side effects: ``<out>/<name>.nii.gz``, ``<out>/status/<name>.json``, with a workspace
    ``<out>/uncertainty/<name>.npz`` and the workspace's rows and files, and the report.
    """
    stderr = stderr or sys.stderr
    t0 = time.perf_counter()
    if options.engine not in ENGINES:
        raise SegLoopError(f"unknown engine {options.engine!r}; choose one of {', '.join(ENGINES)}")
    if options.workers is not None and options.workers < 1:
        raise SegLoopError("--workers must be at least 1")
    mode = Mode(options.mode).value
    plan = expand_inputs(inputs)
    model_path, card, recorder = resolve_model(options.model, options.workspace)
    out = Path(options.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out / LOCK_NAME))
    try:
        lock.acquire(timeout=0)  # released by the OS when this process dies, so a killed batch never blocks
    except Timeout:
        raise SegLoopError(f"another batch is writing to {out}; wait for it to end (one batch per output "
                           "folder)") from None
    try:
        return _run_locked(plan, options, out, mode, model_path, card, recorder, stderr, t0)
    finally:
        lock.release()


def _run_locked(plan: InputPlan, options: BatchOptions, out: Path, mode: str, model_path: Path, card: ModelCard,
                recorder: WorkspaceRecorder | None, stderr: TextIO, t0: float) -> BatchResult:
    """`run_batch` once the output folder is ours."""
    if recorder is not None:
        recorder.out = out
    for note in plan.notes:
        print(f"note: {note}", file=stderr)
    done = _skippable(plan, out, card, mode, recorder is not None)
    todo = [job for job, record in zip(plan.jobs, done) if record is None]
    result = BatchResult(total=len(plan.jobs), skipped=len(plan.jobs) - len(todo), notes=list(plan.notes))
    by_name = {job.name: job for job in plan.jobs}
    submitted = time.time()
    work = [{"name": j.name, "path": j.path, "subject": j.subject, "out": str(out), "model": str(model_path),
             "mode": mode, "uncertainty": recorder is not None, "engine": options.engine, "submitted": submitted,
             "accept_registration": options.accept_registration,
             "qc_dir": str(options.qc_dir) if options.qc_dir else None}
            for j in todo]

    def register(record: dict) -> None:
        try:
            result.registered += recorder.record(record, by_name[record["name"]])
        except Exception as exc:  # noqa: BLE001 - the label map is written; say why it is not in the workspace
            result.workspace_errors.append((record["name"], str(exc) or type(exc).__name__))
            bar.write(f"warning: {record['name']}: not recorded in the workspace: {exc}", file=stderr)

    workers = max(1, min(options.workers or usable_cores(), len(work)))  # no idle workers loading the model
    if options.engine == "local":
        result.engine = {"engine": "local", "workers": workers, "threads_per_worker": threads_per_worker(workers)}
        what = f"{workers} worker process(es) x {result.engine['threads_per_worker']} thread(s)"
    else:
        result.engine = {"engine": "ray", "address": options.address or "local Ray"}
        what = f"Ray ({options.address or 'a local Ray on this machine'})"
    print(f"batch: {result.total} scan(s), {result.skipped} already done (skipped), {len(todo)} to segment "
          f"with {card.name} v{card.version} on {what}; output {out}", file=stderr)
    bar = tqdm(total=len(work), unit="scan", file=stderr, disable=not options.progress or not work,
               dynamic_ncols=True, mininterval=1.0, smoothing=0.1)

    def on_result(record: dict) -> None:
        bar.update(1)
        if record["status"] == OK:
            result.ok += 1
            if recorder is not None:
                register(record)
        else:
            result.failed += 1
            result.failures.append((record["name"], record["error"]))
            bar.write(f"error: {record['name']}: {record['error']}", file=stderr)
        if record.get("status_error"):
            bar.write(f"warning: {record['name']}: {record['status_error']}", file=stderr)
        bar.set_postfix(failed=result.failed, refresh=False)

    t_work = time.perf_counter()
    try:
        if not work:
            pass
        elif options.engine == "local":
            run_local(work, workers, str(model_path), on_result)
        else:
            result.engine.update(run_ray(work, options.workers, str(model_path), on_result, options.address))
    except BaseException:  # interrupted (Ctrl-C) or the engine gave up: the report still shows what is done
        bar.close()
        write_report(out, options.report_path)
        raise
    bar.close()
    work_seconds = time.perf_counter() - t_work
    result.ok += result.skipped
    if recorder is not None:
        for job, record in zip(plan.jobs, done):
            if record is not None:
                register(record)  # done before, perhaps without a workspace: recorded once per scan and model
    result.report, rows = write_report(out, options.report_path)
    result.report_rows = len(rows)
    result.seconds = time.perf_counter() - t0
    result.rate = len(work) / work_seconds if work and work_seconds > 0 else 0.0
    return result


def rebuild_report(out: str | Path, report: str | Path | None = None) -> tuple[Path, int]:
    """Rewrite a batch's report from its status records alone (nothing is segmented).

    Returns
    -------
    (pathlib.Path, int)
        The report (default ``<out>/volumes.csv``) and its number of rows.

    Raises
    ------
    SegLoopError
        When `out` holds no status records.
    """
    out = Path(out)
    if not (out / "status").is_dir():
        raise SegLoopError(f"{out}: no batch status records here (expected {out / 'status'})")
    path, rows = write_report(out, Path(report) if report else out / "volumes.csv")
    return path, len(rows)
