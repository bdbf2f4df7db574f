"""Fine-tuning in the background: one detached job at a time, followed through the database and run folder.

`start_training` records a run, then launches `python -m segloop.training.jobs --run-id N --db URL` in
its own session, so the job outlives the browser tab and the Streamlit process. The job:

1. collects the training cases: the newest 'correction'/'approved' label version of every scan
   (or the versions named in params), plus any original training cases given in params;
2. fine-tunes the base model's checkpoint with `segloop.training.loop.train` (few epochs, small lr),
   polling `<run_dir>/cancel` between epochs;
3. evaluates the new and the parent model on the FIXED validation set of params (Dice per label);
4. exports ONNX and a model card (`segloop.training.export`) and registers the result as a new model
   version, never activating it: a person decides that after comparing the metrics.

Anything that goes wrong marks the run failed with a one-line error (traceback in the log); the
registry is only touched by the final, atomic registration. A job killed outright (power loss,
SIGKILL) leaves a 'running' row whose PID is dead: the next `run_status`/`start_training` notices
and marks it failed. State is the database plus the run folder, so reloading a page loses nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock, Timeout

from segloop.config import PROJECT_ROOT
from segloop.data.splits import Case
from segloop.errors import ModelError, SegLoopError
from segloop.io.atomic import atomic_write_json
from segloop.model.card import Evaluation, Metrics, derived_card, load_card
from segloop.store.database import Datastore
from segloop.store.identity import Action, Identity, acting, audit, authorize
from segloop.store.processes import pid_alive
from segloop.store.registry import register_model
from segloop.store.vocabulary import ACTIVE_RUN_STATES, HUMAN_KINDS, AuditAction, RunState
from segloop.training.export import export_onnx, write_card
from segloop.training.loop import TrainConfig, evaluate_torch, load_case_arrays, load_checkpoint, load_model, train

JOB_MODULE = "segloop.training.jobs"
LOCK_NAME = "training.lock"
#: A queued run whose process never reported is given up after this long.
QUEUED_TIMEOUT_S = 120.0

#: Defaults of a fine-tuning run; params given to `start_training` override them.
DEFAULT_PARAMS: dict[str, Any] = {
    "base_model_id": None,  # None: the active model
    "label_version_ids": None,  # None: newest correction/approved version of every scan
    "include_kinds": list(HUMAN_KINDS),
    "extra_cases": [],  # original training cases: [{"name", "image", "label"}]
    "val_cases": [],  # the FIXED validation set: [{"name", "image", "label"}] (required)
    "epochs": 20,
    "lr": 2e-4,
    "batch_size": 4,
    "patch": None,  # None: the base checkpoint's patch
    "augment": True,
    "seed": 0,
    "threads": 1,
    "time_budget_min": None,
    "name": None,  # None: the base model's name
    "val_every": None,  # also score the fixed validation set every N epochs (curves only; never selects)
}

_children: dict[int, subprocess.Popen] = {}  # processes this one started, reaped so they do not linger as zombies


class JobCancelled(BaseException):
    """Raised inside the job when it is told to stop (SIGTERM).

    A BaseException, like KeyboardInterrupt, so that library code's `except Exception` (a loader turning
    any error into "file is corrupt", say) cannot swallow it and report a cancelled run as failed.

    `run_job` also raises it itself when the cancel flag file appears, and records the run as cancelled.
    """


def runs_dir(store: Datastore) -> Path:
    """Return the folder of the training runs.

    Parameters
    ----------
    store : Datastore
        The workspace's database.

    Returns
    -------
    pathlib.Path
        ``<workspace>/runs``, holding ``run-<NNNN>/`` folders and the ``training.lock`` file; not created here.
    """
    return store.workspace / "runs"


def _lock_path(store: Datastore) -> Path:
    return runs_dir(store) / LOCK_NAME


def _job_lock(store: Datastore, timeout: float) -> FileLock:
    """The OS file lock a training job holds for its whole life; the OS releases it when the job dies,
    however it dies, so a crashed or killed job can never leave a stale lock behind."""
    return FileLock(str(_lock_path(store)), timeout=timeout)


def job_lock_held(store: Datastore) -> bool:
    """Whether a live training job holds the workspace's job lock (checked without waiting)."""
    lock = _job_lock(store, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False


def _pid_alive(pid: int | None, marker: str | None = JOB_MODULE) -> bool:
    """Whether `pid` is a live (non-zombie) process that is still one of our jobs."""
    child = _children.get(pid) if pid else None
    if child is not None and child.poll() is not None:
        _children.pop(pid, None)
        return False
    return pid_alive(pid, marker)


def refresh_runs(store: Datastore) -> list[int]:
    """Mark runs whose process died without reporting as failed; returns their ids.

    A queued run without a process id is left alone for `QUEUED_TIMEOUT_S` seconds (it is still being
    launched).

    Parameters
    ----------
    store : Datastore
        The workspace's database.

    Returns
    -------
    list of int
        Ids of the runs marked failed (empty when none).

    Notes
    -----
    Side effects: those runs get status "failed", ``finished_at`` now and, unless one is recorded,
    the error "the training process exited unexpectedly".
    """
    dead = []
    now = time.time()
    for run in store.active_runs():
        if run.pid is None and run.status == RunState.QUEUED and now - run.created_at < QUEUED_TIMEOUT_S:
            continue  # still being launched
        if not _pid_alive(run.pid):
            dead.append(run.id)
    if dead:
        with store.write() as tx:
            for rid in dead:
                current = tx.run(rid)
                if current.status in ACTIVE_RUN_STATES and not _pid_alive(current.pid):
                    if current.run_dir and (Path(current.run_dir) / "cancel").exists():  # stopped as asked
                        tx.update_run(rid, status=RunState.CANCELLED, finished_at=time.time(), error="cancelled")
                    else:
                        tx.update_run(rid, status=RunState.FAILED, finished_at=time.time(),
                                      error=current.error or "the training process exited unexpectedly")
    return dead


def _case_dicts(cases: list[Any]) -> list[dict[str, Any]]:
    out = []
    for c in cases or []:
        d = asdict(c) if isinstance(c, Case) else dict(c)
        if not d.get("label"):
            raise SegLoopError(f"case {d.get('name')!r} has no label map; training and validation need one")
        for key in ("image", "label"):
            if not Path(d[key]).exists():
                raise SegLoopError(f"case {d['name']!r}: {key} file {d[key]} not found")
        out.append({"name": str(d["name"]), "image": str(d["image"]), "label": str(d["label"])})
    return out


def start_training(store: Datastore, params: dict[str, Any] | None = None, identity: Identity | None = None) -> int:
    """Queue a fine-tuning run and launch it in the background; returns the run id.

    Refuses (SegLoopError) while another run is queued or running.

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    params : dict, optional
        Settings overriding `DEFAULT_PARAMS` (e.g. `segloop.training.finetune.FinetunePlan.params`);
        ``val_cases`` is required. Cases may be `Case` objects or {"name", "image", "label"} dicts.
    identity : Identity, optional
        Who starts it (admins only), recorded with the run and in the audit trail; None: the local identity.

    Returns
    -------
    int
        Id of the new run (status "queued" until the job starts, with its ``pid`` recorded).

    Raises
    ------
    PermissionDenied
        When `identity` may not start training runs (nothing is written).
    SegLoopError
        An unknown setting, a case without label map or with a missing file, no validation case,
        an unknown base model, or another run still queued or running (or holding the lock file).
    ModelError
        No active model (without ``base_model_id``), or the base model has no checkpoint or no card.

    Notes
    -----
    Side effects: a ``training_runs`` row; ``<workspace>/runs/run-<NNNN>/`` with ``params.json``;
    and a detached process ``python -m segloop.training.jobs --run-id N --db URL --workspace W`` in its
    own session, its output appended to ``<run_dir>/job.log``, which takes the OS lock on
    ``<workspace>/runs/training.lock`` for its whole life. When the process cannot be started the run
    is marked failed and the error re-raised.
    """
    identity, _ = acting(identity)
    role = authorize(store, identity, Action.TRAIN)
    p = {**DEFAULT_PARAMS, **(params or {})}
    unknown = set(p) - set(DEFAULT_PARAMS)
    if unknown:
        raise SegLoopError(f"unknown training settings: {', '.join(sorted(unknown))}")
    p["extra_cases"] = _case_dicts(p["extra_cases"])
    p["val_cases"] = _case_dicts(p["val_cases"])
    if not p["val_cases"]:
        raise SegLoopError("choose a validation set: the new and the current model are compared on it")
    if p["base_model_id"] is None:
        active = store.active_model()
        if active is None:
            raise ModelError("there is no active model to fine-tune")
        p["base_model_id"] = active.id
    base = store.model(int(p["base_model_id"]))
    if not base.checkpoint_path or not Path(base.checkpoint_path).is_file():
        raise ModelError(f"model v{base.version} has no torch checkpoint to fine-tune from")
    if not base.card_path or not Path(base.card_path).is_file():
        raise ModelError(f"model v{base.version} has no model card: its fine-tuned version would not know its "
                         "labels or input")
    refresh_runs(store)
    runs_dir(store).mkdir(parents=True, exist_ok=True)
    with store.write() as tx:
        busy = tx.active_runs()
        if busy:
            raise SegLoopError(f"training run #{busy[0].id} is still {busy[0].status}; wait for it or cancel it")
        if job_lock_held(store):
            raise SegLoopError(f"another training job is still running (it holds {_lock_path(store)}); "
                               "wait for it or cancel it")
        run_id = tx.insert_run(base.id, p, (identity.label, identity.subject, identity.email))
        audit(tx, identity, role, AuditAction.TRAIN_START, f"run #{run_id}", run_id=run_id, base_model_id=base.id,
              base_version=base.version, epochs=p["epochs"])
        run_dir = runs_dir(store) / f"run-{run_id:04d}"
        log_path = run_dir / "job.log"
        tx.update_run(run_id, run_dir=str(run_dir), log_path=str(log_path))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "params.json", p)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(x for x in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if x)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", JOB_MODULE, "--run-id", str(run_id), "--db", store.url,
                 "--workspace", str(store.workspace)],
                cwd=str(PROJECT_ROOT), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
    except BaseException as exc:
        with store.write() as tx:
            tx.update_run(run_id, status=RunState.FAILED, finished_at=time.time(), error=f"could not start the job: {exc}")
        raise
    _children[proc.pid] = proc
    with store.write() as tx:
        if tx.run(run_id).pid is None:
            tx.update_run(run_id, pid=proc.pid)
    return run_id


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run_status(store: Datastore, run_id: int) -> dict[str, Any]:
    """Collect everything a page shows about a run: DB state, progress.json, history.json, evaluation, log tail.

    Calls `refresh_runs` first, so a run whose process died shows as failed.

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    run_id : int
        Id of the run.

    Returns
    -------
    dict
        The row's fields (``id``, ``status``, ``base_model_id``, ``params``, ``pid``, ``created_at``,
        ``started_at``, ``finished_at``, ``result_model_id``, ``error``, ``run_dir``); ``elapsed_s``
        (seconds since the start, to the end or now; None before the start); ``stage``
        (``stage.json``), ``progress`` (``train/progress.json``: the latest event of
        `segloop.training.loop.train`), ``history`` (``train/history.json``) and ``evaluation``
        (``evaluation.json``), each ``{}`` while missing; ``cancel_requested`` (bool); and ``log_tail``
        (the last 40 lines of ``job.log``).

    Raises
    ------
    SegLoopError
        When no run has that id.
    """
    refresh_runs(store)
    run = store.run(run_id)
    rd = Path(run.run_dir) if run.run_dir else None
    train_dir = rd / "train" if rd else None
    end = run.finished_at or time.time()
    return {
        "id": run.id, "status": run.status, "base_model_id": run.base_model_id, "params": run.params,
        "pid": run.pid, "created_at": run.created_at, "started_at": run.started_at, "finished_at": run.finished_at,
        "elapsed_s": round(end - run.started_at, 1) if run.started_at else None,
        "result_model_id": run.result_model_id, "error": run.error, "run_dir": run.run_dir,
        "stage": (_read_json(rd / "stage.json") or {}) if rd else {},
        "progress": (_read_json(train_dir / "progress.json") or {}) if train_dir else {},
        "history": (_read_json(train_dir / "history.json") or {}) if train_dir else {},
        "evaluation": (_read_json(rd / "evaluation.json") or {}) if rd else {},
        "cancel_requested": bool(rd and (rd / "cancel").exists()),
        "log_tail": _tail(Path(run.log_path)) if run.log_path else "",
    }


def progress_line(status: dict[str, Any]) -> str:
    """Describe a run's progress in one line, e.g. 'run #3 running training epoch 4/20 loss 0.4123'.

    Parameters
    ----------
    status : dict
        A `run_status` result.

    Returns
    -------
    str
        Run id, status, stage, epoch/epochs and, once known, the latest loss.

    Examples
    --------
    >>> progress_line({"id": 3, "status": "running", "stage": {"stage": "training"}, "params": {"epochs": 20},
    ...                "progress": {"epoch": 4, "loss": 0.41234}})
    'run #3 running training epoch 4/20 loss 0.4123'
    """
    prog = status["progress"]
    epochs = prog.get("epochs") or status["params"].get("epochs") or "?"
    line = (f"run #{status['id']} {status['status']} {status['stage'].get('stage', '')} "
            f"epoch {prog.get('epoch', prog.get('epochs_run', 0))}/{epochs}")
    if prog.get("loss") is not None:
        line += f" loss {prog['loss']:.4f}"
    return line


def follow_run(store: Datastore, run_id: int, report: Callable[[str], None] = print,
               poll_s: float = 2.0) -> dict[str, Any]:
    """Wait for a run to end, reporting each new progress line; returns its final `run_status`.

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    run_id : int
        Id of the run.
    report : callable, optional
        Called with each `progress_line` that differs from the previous one.
    poll_s : float, optional
        Seconds between polls.

    Returns
    -------
    dict
        The `run_status` of the ended run (finished, failed or cancelled). Blocks, without a time
        limit, until then.

    Raises
    ------
    SegLoopError
        When no run has that id.
    """
    last = ""
    while True:
        status = run_status(store, run_id)
        line = progress_line(status)
        if line != last:
            report(line)
            last = line
        if status["status"] not in ACTIVE_RUN_STATES:
            return status
        time.sleep(poll_s)


def cancel(store: Datastore, run_id: int, wait_s: float = 0.0, identity: Identity | None = None) -> dict[str, Any]:
    """Ask a running job to stop, without blocking the caller.

    The job is told twice: a flag file (checked between epochs) and SIGTERM to its process group (its
    handler stops it at once and records "cancelled"). By default this returns at once; the page
    follows the run to its end with `run_status`.

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    run_id : int
        Id of the run; one that has already ended is left alone.
    wait_s : float, optional
        Seconds to wait for the run to end (0: do not wait).
    identity : Identity, optional
        Who cancels it (admins only), recorded in the audit trail; None: the local identity.

    Returns
    -------
    dict
        The run's `run_status` afterwards (still "running" until the job has stopped).

    Raises
    ------
    PermissionDenied
        When `identity` may not cancel training runs.
    SegLoopError
        When no run has that id.
    """
    identity, _ = acting(identity)
    role = authorize(store, identity, Action.TRAIN)
    run = store.run(run_id)
    if run.status not in ACTIVE_RUN_STATES:
        return run_status(store, run_id)
    with store.write() as tx:
        audit(tx, identity, role, AuditAction.TRAIN_CANCEL, f"run #{run_id}", run_id=run_id)
    if run.run_dir:
        Path(run.run_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(run.run_dir) / "cancel", {"requested_at": time.time()})
    if _pid_alive(run.pid):
        try:
            os.killpg(run.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.time() + wait_s
    while time.time() < deadline and store.run(run_id).status in ACTIVE_RUN_STATES:
        time.sleep(0.2)
        refresh_runs(store)
    return run_status(store, run_id)


# --------------------------------------------------------------------------------------------
# the job itself (runs in the detached process)


def collect_cases(store: Datastore, params: dict[str, Any]) -> list[Case]:
    """Collect the training cases: chosen (or newest corrected/approved) label versions, plus params' extra cases.

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    params : dict
        A run's params: ``label_version_ids`` (None: the newest version of each scan among
        ``include_kinds``), ``extra_cases`` and ``val_cases``.

    Returns
    -------
    list of Case
        Label versions first, named ``<scan>@v<N>`` (image = the scan's file, label = the version's
        file), then the extra cases; any case with a validation case's name or image file is left out.

    Raises
    ------
    SegLoopError
        When a listed label version or its scan is not in the database.
    """
    if params.get("label_version_ids") is not None:  # an explicit list (maybe empty: original cases only)
        versions = [store.label_version(int(v)) for v in params["label_version_ids"]]
    else:
        versions = list(store.latest_versions(tuple(params.get("include_kinds") or HUMAN_KINDS)).values())
    cases = []
    for v in versions:
        scan = store.scan(v.scan_id)
        cases.append(Case(f"{scan.name}#{scan.id}@v{v.version}", scan.image_path, v.path))  # names may repeat
    val_names = {c["name"] for c in params.get("val_cases", [])}
    val_images = {str(Path(c["image"]).resolve()) for c in params.get("val_cases", [])}
    cases += [Case(**c) for c in params.get("extra_cases", [])]
    # never train on the fixed validation images
    return [c for c in cases if c.name not in val_names and str(Path(c.image).resolve()) not in val_images]


def evaluate_checkpoint(checkpoint: str | Path, cases: list[Case]) -> dict[str, Any]:
    """Score a checkpoint (Dice per label) on labelled cases (whole volumes, the training code's evaluation).

    Parameters
    ----------
    checkpoint : str or pathlib.Path
        A checkpoint written by `segloop.training.loop.save_checkpoint`; its metadata gives the
        normalisation, number of labels and size divisor.
    cases : list of Case
        Labelled cases.

    Returns
    -------
    dict
        ``{"mean_dice": {label value as str: float}, "mean_dice_all": float, "cases": [names]}``, Dice
        in 0..1 averaged over the cases.

    Raises
    ------
    segloop.errors.ScanError
        When a case cannot be loaded.
    """
    model, meta = load_model(checkpoint)
    norm = meta.get("normalization", "clip_zscore")
    data = [(c.name, *load_case_arrays(c, norm)) for c in cases]
    res = evaluate_torch(model, data, int(meta.get("num_labels", 3)), int(meta.get("size_divisor", 16)))
    return {"mean_dice": {str(k): v for k, v in res["mean_dice"].items()}, "mean_dice_all": res["mean_dice_all"],
            "cases": [c.name for c in cases]}


def _evaluation(result: dict[str, Any], names: dict[int, str], protocol: str) -> Evaluation:
    """An `evaluate_checkpoint` result as a card Evaluation keyed by label name."""
    return Evaluation(cases=list(result["cases"]), protocol=protocol,
                      dice={names.get(int(k), k): round(float(v), 4) for k, v in result["mean_dice"].items()},
                      evaluated_with="PyTorch, whole volumes, the training code's evaluation")


def export_and_card(checkpoint: Path, onnx_path: Path, *, name: str, version: int, base_card_path: str,
                    training: dict[str, Any], split: dict[str, Any], metrics: Metrics, parent: str) -> Path:
    """Write the ONNX file and its card, inherited from the base model's card; returns the card path.

    Parameters
    ----------
    checkpoint : pathlib.Path
        The fine-tuned checkpoint.
    onnx_path : pathlib.Path
        Where to write the ONNX model (replaced if it exists).
    name : str
        The new model's name.
    version : int
        Its version number, for the card.
    base_card_path : str
        The base model's card, the source of task, labels, input and processing.
    training, split : dict
        The card's training record and train/validation case names.
    metrics : Metrics
        The new and the parent model's scores on the fixed validation set.
    parent : str
        How the card names the parent, e.g. "hippocampus-unet v1".

    Returns
    -------
    pathlib.Path
        The card, ``<stem>.card.json`` beside `onnx_path`.

    Raises
    ------
    ModelError
        When the base card is missing or invalid.
    """
    export_onnx(checkpoint, onnx_path)
    _, meta = load_checkpoint(checkpoint)
    card = derived_card(load_card(base_card_path), name=name, version=version, onnx_path=onnx_path,
                        architecture=meta["architecture"], training=training, split=split, metrics=metrics,
                        parent_ref=parent)
    return write_card(card, onnx_path)


def _stage(run_dir: Path, stage: str, **extra: Any) -> None:
    atomic_write_json(run_dir / "stage.json", {"stage": stage, "time": time.time(), **extra})
    print(f"[{time.strftime('%H:%M:%S')}] {stage} {json.dumps(extra) if extra else ''}", flush=True)


def run_job(store: Datastore, run_id: int) -> str:
    """Body of the background job; returns the final status. Never raises for training errors.

    Runs the steps of the module docstring for a queued run. A SegLoopError is recorded as the run's
    error; any other exception as "<type>: <message>" with its traceback printed (to the log);
    SIGTERM, the cancel flag or KeyboardInterrupt end the run as "cancelled".

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    run_id : int
        Id of the run; one that is not "queued" is left alone.

    Returns
    -------
    str
        The run's final `RunState`: "finished", "failed" or "cancelled" (or the current status of a
        run that was not queued).

    Raises
    ------
    SegLoopError
        When no run has that id.

    Notes
    -----
    Side effects: the row goes to "running" (with this process's pid) and then to its final status;
    under the run folder ``stage.json``, ``train/`` (see `segloop.training.loop.train`),
    ``evaluation.json`` and ``export/<name>.onnx`` with its card; the new model is registered
    (`segloop.store.registry.register_model`, not activated). The OS lock on ``runs/training.lock``
    is held from start to end (the OS releases it if the process dies). A SIGTERM handler is
    installed for the duration.
    """
    run = store.run(run_id)
    run_dir = Path(run.run_dir or runs_dir(store) / f"run-{run_id:04d}")
    run_dir.mkdir(parents=True, exist_ok=True)
    cancel_flag = run_dir / "cancel"
    lock = _job_lock(store, timeout=30.0)
    try:
        lock.acquire()
    except Timeout:
        with store.write() as tx:
            tx.update_run(run_id, status=RunState.FAILED, finished_at=time.time(),
                          error="another training job holds the workspace's training lock")
        return RunState.FAILED
    with store.write() as tx:
        if tx.run(run_id).status != RunState.QUEUED:
            lock.release()
            return tx.run(run_id).status
        tx.update_run(run_id, status=RunState.RUNNING, pid=os.getpid(), started_at=time.time())

    def on_term(signum, frame):  # noqa: ARG001
        raise JobCancelled()

    signal.signal(signal.SIGTERM, on_term)
    status, error, result_id = RunState.FAILED, None, None
    try:
        p = run.params
        base = store.model(int(run.base_model_id))
        train_cases = collect_cases(store, p)
        extra_names = {c["name"] for c in p.get("extra_cases", [])}
        val_cases = [Case(**c) for c in p["val_cases"]]
        if not train_cases:
            raise SegLoopError("no corrected or approved label maps to train on")
        _, meta = load_checkpoint(base.checkpoint_path)
        epochs = int(p["epochs"])
        val_every = int(p.get("val_every") or 0)
        cfg = TrainConfig(epochs=epochs, time_budget_min=p.get("time_budget_min"), batch_size=int(p["batch_size"]),
                          lr=float(p["lr"]), val_every=val_every or max(1, epochs), seed=int(p["seed"]), augment=bool(p["augment"]),
                          threads=p.get("threads"), num_labels=int(meta.get("num_labels", 3)),
                          architecture=meta["architecture"], normalization=meta.get("normalization", "clip_zscore"),
                          base_checkpoint=base.checkpoint_path, warmup_steps=1,
                          patch=tuple(p.get("patch") or meta.get("patch") or (48, 64, 48)))
        _stage(run_dir, "training", cases=len(train_cases), validation=len(val_cases))
        # the epoch count is fixed, so the fixed set never selects a checkpoint: with val_every it is only
        # scored for the progress curves, and the last epoch's weights are kept
        summary = train(cfg, train_cases, val_cases if val_every else [], run_dir / "train",
                        should_stop=cancel_flag.exists)
        if summary.get("stopped") == "cancelled" or cancel_flag.exists():
            raise JobCancelled()
        ckpt = run_dir / "train" / "last.pt" if val_every else Path(summary["checkpoint"])
        _stage(run_dir, "evaluating")
        new_eval = evaluate_checkpoint(ckpt, val_cases)
        parent_eval = evaluate_checkpoint(base.checkpoint_path, val_cases)
        evaluation = {"new": new_eval, "parent": parent_eval, "parent_model_id": base.id,
                      "parent_version": base.version,
                      "delta_mean_dice": new_eval["mean_dice_all"] - parent_eval["mean_dice_all"]}
        atomic_write_json(run_dir / "evaluation.json", evaluation)
        if cancel_flag.exists():
            raise JobCancelled()
        _stage(run_dir, "exporting")
        name = p.get("name") or base.name
        version = max((m.version for m in store.models()), default=0) + 1
        onnx_path = run_dir / "export" / f"{name}.onnx"
        names = load_card(base.card_path).label_names
        protocol = f"fixed validation set of fine-tuning run #{run_id} (never used to pick weights)"
        metrics = Metrics(validation=_evaluation(new_eval, names, protocol),
                          parent_validation=_evaluation(parent_eval, names, protocol))
        corrected = [c.name for c in train_cases if c.name not in extra_names]
        card_path = export_and_card(
            ckpt, onnx_path, name=name, version=version, base_card_path=base.card_path,
            training={"fine_tuned_from": f"{base.name} v{base.version}", "run_id": run_id, "epochs": epochs,
                      "lr": cfg.lr, "batch_size": cfg.batch_size, "corrected_cases": corrected,
                      "original_cases": sorted(extra_names), "summary": summary},
            split={"train": [c.name for c in train_cases], "validation": [c.name for c in val_cases]},
            metrics=metrics, parent=f"{base.name} v{base.version}")
        _stage(run_dir, "registering")
        model = register_model(store, onnx_path, card_path, ckpt, name=name, parent_id=base.id,
                               activate=False, note=f"fine-tuned by run #{run_id}")
        if model.version != version and model.card_path:  # someone registered a model meanwhile
            card = load_card(model.card_path)  # cards are read and written by segloop.model.card only
            card.version = model.version
            card.save(model.card_path)
        status, result_id = RunState.FINISHED, model.id
        _stage(run_dir, "finished", model_id=model.id, version=model.version)
    except (JobCancelled, KeyboardInterrupt):
        status, error = RunState.CANCELLED, "cancelled"
        _stage(run_dir, "cancelled")
    except SegLoopError as exc:
        error = str(exc)
        _stage(run_dir, "failed", error=error)
    except Exception as exc:  # noqa: BLE001 - recorded for the user, traceback in the log
        traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"
        _stage(run_dir, "failed", error=error)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with store.write() as tx:
            tx.update_run(run_id, status=status, finished_at=time.time(), error=error, result_model_id=result_id)
        lock.release()
    return status


def main(argv: list[str] | None = None) -> int:
    """Run one queued fine-tuning job: the entry point of ``python -m segloop.training.jobs``.

    Parameters
    ----------
    argv : list of str, optional
        ``--run-id N`` (required), ``--db URL`` and ``--workspace DIR``; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 when the run finished or was cancelled, 1 when it failed.
    """
    ap = argparse.ArgumentParser(prog=f"python -m {JOB_MODULE}", description="Run one queued fine-tuning job.")
    ap.add_argument("--run-id", type=int, required=True)
    ap.add_argument("--db", default=None, help="database URL (sqlite:///path); default: the workspace's")
    ap.add_argument("--workspace", default=None)
    args = ap.parse_args(argv)
    store = Datastore(args.db, workspace=args.workspace)
    status = run_job(store, args.run_id)
    return 0 if status in (RunState.FINISHED, RunState.CANCELLED) else 1


if __name__ == "__main__":
    raise SystemExit(main())
