"""Status records: one JSON file per scan, the batch's memory across crashes, kills and reruns.

A worker writes ``<out>/status/<name>.json`` atomically as the LAST step of a scan, after its label
map: a status file saying "ok" therefore always has its label map beside it. A rerun trusts a record
only when it says "ok", the input file's sha256 is still the one recorded, and the label map (and,
for the workspace, the uncertainty map) still exists; anything else is segmented again. The volume
report is a view of these records (`write_report`), rewritten at the end of each run and rebuildable
at any time.

Record fields: ``name``, ``status`` ("ok" or "failed"), ``error`` (the plain reason, "" when ok),
``input`` (absolute path), ``subject``, ``input_sha256``, ``input_bytes``, ``content_id`` (voxels
and geometry, `segloop.io.volume.content_id`; with a workspace only), ``output`` (label map path or
None), ``uncertainty`` (.npz path or None), ``kind`` ("crop" / "whole head"), ``model``, ``mode``, ``report`` (the
`segloop.wholehead.segment.volume_report` row), ``timings``, ``warnings``, ``provider``,
``started``/``finished`` (Unix time), ``seconds`` (wall time of the whole scan: read, segment,
write), ``host``, ``pid``, ``engine`` and ``format`` (1).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from segloop.io.atomic import atomic_write_bytes, atomic_write_json
from segloop.io.writers import write_csv

FORMAT = 1
OK = "ok"
FAILED = "failed"
#: Read size for hashing inputs (streaming: a scan is never held in memory to be hashed).
CHUNK = 1 << 20
#: Report columns that come first, in this order; the `volume_report` columns follow.
LEAD_COLUMNS = ("scan", "status", "error", "input", "subject", "output", "path", "seconds")


def status_dir(out: str | Path) -> Path:
    """``<out>/status``: where the per-scan records live."""
    return Path(out) / "status"


def status_path(out: str | Path, name: str) -> Path:
    """``<out>/status/<name>.json``."""
    return status_dir(out) / f"{name}.json"


def label_path(out: str | Path, name: str) -> Path:
    """``<out>/<name>.nii.gz``: the scan's label map, on the scan's own grid."""
    return Path(out) / f"{name}.nii.gz"


def uncertainty_path(out: str | Path, name: str) -> Path:
    """``<out>/uncertainty/<name>.npz``: the uncertainty map (float16, RAS order, key ``uncertainty``)."""
    return Path(out) / "uncertainty" / f"{name}.npz"


def input_sha256(path: str | Path) -> tuple[str, int]:
    """sha256 and size of an input, read in 1 MiB chunks.

    Parameters
    ----------
    path : str or pathlib.Path
        A scan file, or a folder (a DICOM series): then every file below it counts, in sorted order of
        their relative paths, each path hashed before its bytes.

    Returns
    -------
    sha256 : str
        64 lowercase hex digits.
    size : int
        Bytes read.

    Raises
    ------
    OSError
        When the input is missing or unreadable.
    """
    path = Path(path)
    h, size = hashlib.sha256(), 0
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
                size += len(chunk)
    return h.hexdigest(), size


def write_status(out: str | Path, record: dict) -> Path:
    """Write a scan's record to ``<out>/status/<name>.json`` atomically (a kill leaves the old one or the new one).

    Returns
    -------
    pathlib.Path
        The status file.
    """
    path = status_path(out, record["name"])
    atomic_write_json(path, record)
    return path


def read_status(out: str | Path, name: str) -> dict | None:
    """A scan's record, or None when there is none or it cannot be read (then the scan is simply redone)."""
    try:
        record = json.loads(status_path(out, name).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("name") == name else None


def read_all(out: str | Path) -> list[dict]:
    """Every readable record in ``<out>/status``, sorted by name (unreadable files are skipped)."""
    folder = status_dir(out)
    if not folder.is_dir():
        return []
    records = [read_status(out, p.name[: -len(".json")]) for p in folder.glob("*.json") if not p.name.startswith(".")]
    return sorted((r for r in records if r is not None), key=lambda r: r["name"])


def is_done(record: dict | None, path: str | Path, out: str | Path, need_uncertainty: bool = False) -> bool:
    """Whether a scan can be skipped: its record says ok, for these very input bytes, with its outputs there.

    Parameters
    ----------
    record : dict or None
        The scan's status record (`read_status`).
    path : str or pathlib.Path
        The input as it is now; hashed (streaming) only when everything else already holds.
    out : str or pathlib.Path
        The batch's output folder.
    need_uncertainty : bool
        Also require the uncertainty map (a batch that registers scans in a workspace needs it).

    Returns
    -------
    bool
        False when the record is missing or failed, the label map (or uncertainty map) is gone, the
        input is missing, or its sha256 differs from the recorded one.
    """
    if not record or record.get("status") != OK or not record.get("input_sha256"):
        return False
    if not label_path(out, record["name"]).is_file():
        return False
    if need_uncertainty and not uncertainty_path(out, record["name"]).is_file():
        return False
    try:
        digest, _ = input_sha256(path)
    except OSError:
        return False
    return digest == record["input_sha256"]


def report_row(record: dict) -> dict:
    """One report row of a record: status, error, input, output, wall seconds, then the volume columns.

    ``seconds`` is the scan's whole wall time (read, segment, write); `volume_report`'s own ``seconds``
    (the segmentation only) becomes ``segment_seconds``.
    """
    row = {"scan": record["name"], "status": record.get("status", ""), "error": record.get("error", ""),
           "input": record.get("input", ""), "subject": record.get("subject", ""),
           "output": record.get("output") or "", "path": record.get("kind") or "",
           "seconds": record.get("seconds", "")}
    if record.get("qc"):  # the whole head's QC picture, when asked for
        row["qc_picture"] = record["qc"]
    for key, value in (record.get("report") or {}).items():
        if key == "seconds":
            row["segment_seconds"] = value
        elif key not in ("scan", "path"):
            row[key] = value
    return row


def write_report(out: str | Path, report: str | Path) -> tuple[Path, list[dict]]:
    """Rewrite the volume report from every status record in ``<out>/status``, atomically.

    Parameters
    ----------
    out : str or pathlib.Path
        The batch's output folder.
    report : str or pathlib.Path
        The CSV to write.

    Returns
    -------
    path : pathlib.Path
        `report`.
    rows : list of dict
        The rows written, sorted by scan name. Columns: `LEAD_COLUMNS`, then the union of the
        volume columns (crop rows leave the per-side cells of whole heads empty, and vice versa).
    """
    rows = [report_row(r) for r in read_all(out)]
    for row in rows:  # where the label map is now (the folder may have been moved since it was written)
        if row["status"] == OK:
            row["output"] = str(label_path(out, row["scan"]))
    columns = list(LEAD_COLUMNS) + [c for c in dict.fromkeys(k for r in rows for k in r) if c not in LEAD_COLUMNS]
    if not rows:  # a header-only report still loads (pandas: no rows)
        atomic_write_bytes(report, (",".join(columns) + "\n").encode())
        return Path(report), []
    header = {c: "" for c in columns}
    return write_csv(report, [{**header, **r} for r in rows]), rows  # every row lists every column, in order


def worker_identity() -> dict:
    """``host`` and ``pid`` of this process, recorded with each scan (which machine of a cluster did it)."""
    return {"host": os.uname().nodename if hasattr(os, "uname") else "", "pid": os.getpid()}
