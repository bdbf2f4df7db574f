"""Segment one scan of a batch, in whatever process the engine runs it: read, segment, write, record.

`process_scan` never raises for a bad scan: a corrupt file, a scan that is neither a crop nor a head, a
failed registration or an unexpected error in one scan all end as a "failed" record with the plain
reason, so one scan cannot stop a cohort. Its order of writes is what makes resuming safe: label map
(and uncertainty map), then the status record, each atomically.

`limit_threads` caps this process's thread pools (ONNX Runtime, SimpleITK registration, torch, BLAS),
so that N worker processes x threads stay within the cores instead of fighting over them.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from segloop.batch.records import FAILED, FORMAT, OK, input_sha256, label_path, uncertainty_path, write_status
from segloop.errors import SegLoopError
from segloop.io.atomic import atomic_write_bytes
from segloop.io.readers import load_scan
from segloop.io.volume import content_id
from segloop.io.writers import save_label
from segloop.model.inference import THREADS_ENV, get_session
from segloop.wholehead.qc import write_qc
from segloop.wholehead.segment import RegistrationRefused, segment_scan, volume_report

#: Environment variables read by OpenMP/BLAS/ITK thread pools when they start (torch reads OMP_NUM_THREADS).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", THREADS_ENV)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's limit), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def limit_threads(threads: int, model_path: str | Path | None = None) -> str:
    """Cap this process's thread pools at `threads` and load the model's ONNX Runtime session once.

    Meant for a worker process at start-up, before it segments anything: the environment variables
    reach OpenMP, torch and BLAS pools that start later, SimpleITK's global default (which the
    whole-head registration uses) is set now, and ONNX Runtime's
    session is created here with `threads` intra-op threads and kept in `segloop.model.inference`'s
    per-process cache, which every later scan of this process reuses.

    Parameters
    ----------
    threads : int
        Threads per pool, at least 1.
    model_path : str or pathlib.Path, optional
        The ONNX model to load now (None: load nothing).

    Returns
    -------
    str
        "" when the model loaded (or none was asked for), else the reason it did not; the scans then
        fail one by one with that reason instead of the worker dying.

    Notes
    -----
    `segloop.model.inference` gives a new session one intra-op thread per core unless
    SEGLOOP_ORT_THREADS says otherwise: right for the app and `predict`, N times too many for N workers.
    """
    threads = max(1, int(threads))
    for var in THREAD_VARIABLES:
        os.environ[var] = str(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    if model_path is None:
        return ""
    try:
        get_session(model_path)
    except SegLoopError as exc:
        return str(exc)
    return ""


def _reason(exc: BaseException, path: str) -> str:
    """One line saying why a scan failed."""
    if isinstance(exc, SegLoopError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"{Path(path).name}: file not found"
    if isinstance(exc, OSError):
        return f"{Path(path).name}: could not be read or written ({exc.strerror or exc})"
    if isinstance(exc, MemoryError):
        return f"{Path(path).name}: out of memory while segmenting it"
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return f"unexpected {type(exc).__name__}{': ' + text[:200] if text else ''}"


def _discard(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def process_scan(job: dict) -> dict:
    """Segment one scan and write its label map, optional uncertainty map and status record.

    Parameters
    ----------
    job : dict
        ``name``, ``path`` (scan file or DICOM folder), ``subject``, ``out`` (output folder), ``model``
        (ONNX path, shared by all workers), ``mode`` ("auto", "crop", "whole-head"), ``uncertainty``
        (bool: also write ``<out>/uncertainty/<name>.npz``), ``engine`` (recorded), and optionally
        ``accept_registration`` (bool) and ``qc_dir`` (write the whole head's QC picture there; its path is
        recorded as ``qc``).

    Returns
    -------
    dict
        The status record as written to ``<out>/status/<name>.json`` (see `segloop.batch.records`),
        plus ``status_error`` when even the status file could not be written.

    Notes
    -----
    Side effects: ``<out>/<name>.nii.gz`` (the label map on the scan's own grid, `save_label`) when
    it succeeds; after a failure any label and uncertainty map of an earlier run under this name are
    removed, so no file outlives the record that vouches for it. Never raises for a bad scan.
    """
    started, t0 = time.time(), time.perf_counter()
    name, path, out = job["name"], job["path"], Path(job["out"])
    record: dict = {"format": FORMAT, "name": name, "status": FAILED, "error": "", "input": path,
                    "subject": job.get("subject", ""), "input_sha256": None, "input_bytes": None, "content_id": None,
                    "output": None, "uncertainty": None, "kind": None, "model": None, "mode": job["mode"],
                    "report": None, "timings": {}, "warnings": [], "provider": None, "engine": job.get("engine", ""),
                    "host": socket.gethostname(), "pid": os.getpid(), "started": started}
    try:
        record["input_sha256"], record["input_bytes"] = input_sha256(path)
        t = time.perf_counter()
        volume = load_scan(path)
        record["timings"]["read"] = time.perf_counter() - t
        if job.get("uncertainty"):  # the workspace identifies scans by content; nobody else needs it
            record["content_id"] = content_id(volume)
        try:
            seg = segment_scan(volume, job["model"], job["mode"], accept_registration=bool(job.get("accept_registration")))
        except RegistrationRefused as exc:
            if job.get("qc_dir"):  # a refused head is the one to look at
                record["qc"] = str(write_qc(job["qc_dir"], name, volume, exc.registration))
            raise
        record["timings"].update(seg.timings)
        if job.get("qc_dir") and seg.registration is not None:
            record["qc"] = str(write_qc(job["qc_dir"], name, volume, seg.registration,
                                        "boxes placed by a person" if seg.placed_by == "person" else ""))
        t = time.perf_counter()
        save_label(seg.labels, volume, label_path(out, name))
        if job.get("uncertainty"):
            buf = io.BytesIO()
            np.savez_compressed(buf, uncertainty=seg.uncertainty.astype(np.float16))
            atomic_write_bytes(uncertainty_path(out, name), buf.getvalue())
            record["uncertainty"] = str(uncertainty_path(out, name))
        record["timings"]["write"] = time.perf_counter() - t
        record.update(status=OK, output=str(label_path(out, name)), kind=str(seg.kind),
                      model=f"{seg.card.name} v{seg.card.version}", report=volume_report(name, seg),
                      warnings=list(seg.warnings), provider=seg.provider)
    except Exception as exc:  # noqa: BLE001 - one bad scan must never stop the batch
        record["error"] = _reason(exc, path)
        _discard(label_path(out, name), uncertainty_path(out, name))
    record["timings"] = {k: round(v, 4) for k, v in record["timings"].items()}
    record["finished"] = time.time()
    record["seconds"] = round(time.perf_counter() - t0, 4)
    try:
        write_status(out, record)
    except OSError as exc:
        record["status_error"] = f"the status file could not be written ({exc.strerror or exc})"
    return record
