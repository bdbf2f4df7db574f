"""Where the scans of a batch run: a local process pool, or Ray Data actors on a Ray cluster.

Both engines call the same per-scan function (`segloop.batch.worker.process_scan`) in long-lived
worker processes, each holding ONE ONNX Runtime session for the whole batch (created at worker start,
with its threads capped so that workers x threads stay within the cores), and hand each finished
record to the caller's `on_result` in the parent process, in completion order. Workers write the
label maps and status records themselves, to paths every worker sees (a shared file system on a
cluster), so the parent never carries voxels.

`local`: `concurrent.futures.ProcessPoolExecutor` (spawned processes: nothing of the parent's thread
pools is inherited). A worker that dies (out of memory, a crash in a native library) breaks the pool;
the scans that were in flight are then retried one at a time in a pool of their own, so the one that
kills its worker again is recorded as failed and the others finish. Workers exit when the parent dies
(`kill -9` of the command), so nothing is left running to race the rerun.

`ray`: `ray.data.from_items(jobs).map(ScanActor, compute=ActorPoolStrategy(size=N), num_cpus=threads,
num_gpus=1 when the cluster has GPUs, a fraction when N exceeds them)` (see `ray_layout`). Joins the
cluster at `address` (``"auto"``: the one this machine belongs to), or starts a local Ray with this
machine's cores and shuts it down at the end.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Callable

from segloop.batch.records import FAILED, FORMAT, read_status, write_status
from segloop.batch.worker import limit_threads, process_scan, usable_cores
from segloop.errors import SegLoopError

ENGINES = ("local", "ray")
RAY_INSTALL = "pip install 'ray[data]'"
#: Jobs handed to the pool ahead of the free workers, per worker (keeps workers busy while the parent
#: handles a result; bounds what must be retried when a worker dies).
AHEAD = 1
#: Worker deaths on consecutive scans (none finishing between) that stop the batch: a broken machine, not a bad scan.
MAX_DEATHS_IN_A_ROW = 3
#: Seconds between a worker's checks that its parent is still alive.
WATCHDOG_S = 1.0

Job = dict
OnResult = Callable[[dict], None]


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Threads each of `workers` processes may use so that workers x threads <= cores (at least 1).

    Examples
    --------
    >>> threads_per_worker(2, 2), threads_per_worker(4, 16), threads_per_worker(8, 2)
    (1, 4, 1)
    """
    return max(1, (cores or usable_cores()) // max(1, workers))


def died_record(job: Job, reason: str, engine: str) -> dict:
    """The failed status record of a scan whose worker died or was lost (written by the parent)."""
    now = time.time()
    return {"format": FORMAT, "name": job["name"], "status": FAILED, "error": reason, "input": job["path"],
            "subject": job.get("subject", ""), "input_sha256": None, "input_bytes": None, "content_id": None,
            "output": None, "uncertainty": None, "kind": None, "model": None, "mode": job["mode"], "report": None,
            "timings": {}, "warnings": [], "provider": None, "engine": engine, "host": "", "pid": None,
            "started": now, "finished": now, "seconds": 0.0}


# ---------------------------------------------------------------- local engine

def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(WATCHDOG_S)
        if os.getppid() != parent:  # re-parented: the batch command is gone (killed); stop working for it
            os._exit(1)


def _init_local_worker(model_path: str | None, threads: int, parent: int) -> None:
    """Worker start-up: ignore Ctrl-C (the parent handles it), cap threads, load the model, watch the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit_threads(threads, model_path)  # a model that fails to load fails each scan with the reason
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _pool(workers: int, model_path: str | None, threads: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_local_worker, initargs=(model_path, threads, os.getpid()))


def _run_pool(jobs: list[Job], workers: int, model_path: str | None, threads: int, on_result: OnResult,
              fn: Callable[[Job], dict]) -> tuple[list[Job], list[Job], int]:
    """Run jobs on one pool until done or the pool breaks.

    Returns (jobs in flight when it broke, jobs not yet handed to it, records delivered).
    """
    queue = list(reversed(jobs))
    inflight: dict[Future, Job] = {}
    delivered = 0
    pool = _pool(workers, model_path, threads)
    try:
        while queue or inflight:
            while queue and len(inflight) < workers * (1 + AHEAD):
                job = queue.pop()
                try:
                    inflight[pool.submit(fn, job)] = job
                except BrokenProcessPool:
                    queue.append(job)
                    return list(inflight.values()), list(reversed(queue)), delivered
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            broken = False
            for fut in done:
                job = inflight.pop(fut)
                try:
                    record = fut.result()
                except BrokenProcessPool:
                    inflight[fut] = job
                    broken = True
                    continue
                on_result(record)
                delivered += 1
            if broken:
                return list(inflight.values()), list(reversed(queue)), delivered
        return [], [], delivered
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def run_local(jobs: list[Job], workers: int, model_path: str | None, on_result: OnResult,
              threads: int | None = None, fn: Callable[[Job], dict] = process_scan) -> None:
    """Segment jobs on `workers` local processes, handing each record to `on_result` as it comes.

    Parameters
    ----------
    jobs : list of dict
        Worker jobs (see `segloop.batch.worker.process_scan`).
    workers : int
        Worker processes.
    model_path : str or None
        ONNX model each worker loads once at start (None: none, for a `fn` that needs no model).
    on_result : callable
        Called in this process with each scan's record, in completion order.
    threads : int, optional
        Threads per worker (default: cores // workers, at least 1).
    fn : callable, optional
        The per-scan function (module level, picklable); `process_scan` unless testing.

    Raises
    ------
    SegLoopError
        When workers die on `MAX_DEATHS_IN_A_ROW` scans in a row (out of memory, workers that cannot start).

    Notes
    -----
    A scan whose worker dies twice (once among others, once alone) gets a failed record, written here,
    saying so; the batch goes on, unless that happens on `MAX_DEATHS_IN_A_ROW` scans with none
    finishing in between.
    """
    threads = threads or threads_per_worker(workers)
    pending = list(jobs)
    deaths = 0  # scans in a row whose worker died, with no scan finishing in between
    while pending:
        suspects, pending, delivered = _run_pool(pending, workers, model_path, threads, on_result, fn)
        deaths = 0 if delivered else deaths
        for job in suspects:  # alone in a pool: if it breaks this one too, it is the scan that kills workers
            again, _, delivered = _run_pool([job], 1, model_path, threads, on_result, fn)
            if not again:
                deaths = 0
                continue
            deaths += 1
            if deaths >= MAX_DEATHS_IN_A_ROW:
                raise SegLoopError(f"worker processes died on {deaths} scans in a row, the last one {job['name']}: "
                                   "not a bad scan but the machine (out of memory? try fewer --workers) or a worker "
                                   "that cannot start; finished scans are kept, and a rerun resumes")
            record = died_record(job, "the worker process died while segmenting this scan (out of memory, "
                                      "or a crash in a native library)", "local")
            write_status(job["out"], record)
            on_result(record)


# ---------------------------------------------------------------- Ray engine

class ScanActor:
    """A Ray Data actor: one ONNX Runtime session for its lifetime, one scan per row.

    Parameters
    ----------
    model_path : str
        ONNX model (a path every node sees).
    threads : int
        Threads for this actor's pools (its ``num_cpus``).
    """

    def __init__(self, model_path: str, threads: int):
        self.load_error = limit_threads(threads, model_path)

    def __call__(self, row: dict) -> dict:
        """``{"job": <json>}`` in, ``{"record": <json>}`` out (strings: the records' nested fields vary by scan)."""
        return {"record": json.dumps(process_scan(json.loads(row["job"])))}


@dataclass(frozen=True)
class RayLayout:
    """How many actors, and what each one asks the cluster for (``gpus`` may be a fraction: actors share a GPU)."""

    actors: int
    cpus: int
    gpus: float


def ray_layout(nodes: list[dict], workers: int | None) -> RayLayout:
    """Actor count and per-actor resources for the live nodes of a Ray cluster.

    With GPUs: as many actors as GPUs (or `workers`), one GPU each, or an equal fraction of one when
    `workers` exceeds the GPUs (ONNX Runtime sessions of this small network share a GPU well); each
    actor takes its share of its node's CPUs, since reading, registering and resampling whole heads
    run on the CPU. Only nodes with GPUs then host actors. Without GPUs: `workers` actors (default:
    one per CPU of the cluster), each with an equal share of the CPUs.

    Parameters
    ----------
    nodes : list of dict
        ``ray.nodes()``: each with ``Alive`` and ``Resources`` (``CPU``, ``GPU``).
    workers : int or None
        Actors asked for (None: as many as the cluster holds).

    Returns
    -------
    RayLayout

    Examples
    --------
    >>> node = lambda cpu, gpu=0: {"Alive": True, "Resources": {"CPU": cpu, **({"GPU": gpu} if gpu else {})}}
    >>> ray_layout([node(2)], 2)
    RayLayout(actors=2, cpus=1, gpus=0)
    >>> ray_layout([node(32, 4), node(32, 4)], None)
    RayLayout(actors=8, cpus=8, gpus=1)
    >>> ray_layout([node(32, 4), node(32, 4)], 32)
    RayLayout(actors=32, cpus=2, gpus=0.25)
    >>> ray_layout([node(16), node(16)], None)
    RayLayout(actors=32, cpus=1, gpus=0)
    """
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    cpus = int(sum(r.get("CPU", 0) for r in alive)) or 1
    gpu_nodes = [r for r in alive if r.get("GPU", 0) >= 1]
    if gpu_nodes:
        total = int(sum(r["GPU"] for r in gpu_nodes))
        actors = workers or total
        share = 1 if actors <= total else int(total / actors * 10000) / 10000  # Ray takes 4 decimals
        per_actor = max(1, min(int(r.get("CPU", 1) * share // r["GPU"]) for r in gpu_nodes))
        return RayLayout(actors, per_actor, share)
    actors = workers or cpus
    return RayLayout(actors, max(1, cpus // actors), 0)


def _quiet_ray_data(ray) -> None:
    """No progress bars or execution banners from Ray Data: the batch prints its own progress line."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run_ray(jobs: list[Job], workers: int | None, model_path: str, on_result: OnResult,
            address: str | None = None) -> dict:
    """Segment jobs on Ray Data actors, handing each record to `on_result` as it comes back.

    Parameters
    ----------
    jobs : list of dict
        Worker jobs; their paths (inputs, ``out``, the model) must be the same on every node.
    workers : int or None
        Actors (default: one per GPU, else one per CPU, of the cluster).
    model_path : str
        ONNX model each actor loads once.
    on_result : callable
        Called in this process with each scan's record.
    address : str, optional
        Ray cluster to join (``"auto"``, ``"ray://head:10001"``...); None starts a local Ray with this
        machine's cores (or `workers`, if more) and shuts it down at the end.

    Returns
    -------
    dict
        ``actors``, ``cpus_per_actor``, ``gpus_per_actor`` and the cluster's ``cluster_cpus``/``cluster_gpus``.

    Raises
    ------
    SegLoopError
        When Ray is not installed or the cluster cannot be reached.

    Notes
    -----
    A scan whose record never comes back (its actor kept dying) gets a failed record written here.
    """
    try:
        # Optional dependency, imported here only: Ray is a large install that the app, `predict` and
        # the local engine never need, and importing it starts threads and takes about a second.
        import ray
    except ImportError:
        raise SegLoopError(f"the ray engine needs Ray; install ray: {RAY_INSTALL}") from None
    started_here = not ray.is_initialized()
    if started_here:
        options = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        try:
            if address:
                ray.init(address=address, **options)
            else:
                ray.init(num_cpus=max(workers or 0, usable_cores()), **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise SegLoopError(f"could not start or join Ray{' at ' + address if address else ''}: "
                               f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    try:
        with warnings.catch_warnings():  # Ray Data's own DataContext warns about its deprecated fields
            warnings.simplefilter("ignore", DeprecationWarning)
            _quiet_ray_data(ray)
        layout = ray_layout(ray.nodes(), workers)
        resources = ray.cluster_resources()
        info = {"actors": layout.actors, "cpus_per_actor": layout.cpus, "gpus_per_actor": layout.gpus,
                "cluster_cpus": int(resources.get("CPU", 0)), "cluster_gpus": int(resources.get("GPU", 0))}
        seen: set[str] = set()
        if jobs:
            ds = ray.data.from_items([{"job": json.dumps(j)} for j in jobs], override_num_blocks=len(jobs))
            # Ray Data logs a harmless "constructor arguments in the object store" line from core_worker.cc
            # for any actor class (ray-project/ray#57733).
            ds = ds.map(ScanActor, fn_constructor_kwargs={"model_path": model_path, "threads": layout.cpus},
                        compute=ray.data.ActorPoolStrategy(size=min(layout.actors, len(jobs))),
                        num_cpus=layout.cpus, num_gpus=layout.gpus)
            error = ""
            try:
                for row in ds.iter_rows():
                    record = json.loads(row["record"])
                    seen.add(record["name"])
                    on_result(record)
            except Exception as exc:  # noqa: BLE001 - the scans that did come back are kept; the rest fail
                first = str(exc).splitlines()[0][:200] if str(exc) else ""
                error = f"the Ray job stopped ({type(exc).__name__}: {first})"
            for job in jobs:
                if job["name"] not in seen:
                    _lost(job, error or "the Ray worker that had this scan was lost", on_result)
        return info
    finally:
        if started_here:
            ray.shutdown()


def _lost(job: Job, reason: str, on_result: OnResult) -> None:
    """A scan whose record did not come back: keep what its worker wrote, if it did; else record the failure."""
    record = read_status(job["out"], job["name"])
    if record is None or record.get("input") != job["path"] or record.get("started", 0) < job.get("submitted", 0):
        record = died_record(job, reason, "ray")
        write_status(job["out"], record)
    on_result(record)
