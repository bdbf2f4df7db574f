"""The embedded database: scans, label versions, models, training runs and prediction info.

SQLite in WAL mode (readers never block the one writer; `busy_timeout` makes concurrent writers
wait instead of failing; foreign keys on). Every SQL statement of SegLoop lives in this module,
behind `Datastore` and its write transaction `Tx`, so a server database could replace SQLite later
without touching callers. Large data (voxels, weights) stays in files; rows hold their paths.

Where the database lives: `SEGLOOP_DB_URL` (`sqlite:///abs/path.db`) or an explicit URL wins, else
`<workspace>/segloop.db` (workspace = `segloop.config.workspace_dir()` or an explicit folder).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import nibabel as nib

from segloop.config import workspace_dir
from segloop.data.folders import list_cases
from segloop.errors import SegLoopError
from segloop.store.vocabulary import LabelKind, ScanSource

#: Schema migrations; entry i brings the schema from version i to i + 1 (PRAGMA user_version).
MIGRATIONS: list[str] = [
    """
    CREATE TABLE scans (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image_path TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('uploaded', 'imported', 'datadir')),
        shape TEXT,
        spacing TEXT,
        sha256 TEXT,
        size_bytes INTEGER,
        mtime REAL,
        reference_label_path TEXT,
        created_at REAL NOT NULL
    );
    CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        version INTEGER NOT NULL UNIQUE,
        onnx_path TEXT NOT NULL,
        checkpoint_path TEXT,
        card_path TEXT,
        parent_id INTEGER REFERENCES models(id),
        created_at REAL NOT NULL,
        metrics TEXT NOT NULL DEFAULT '{}',
        active INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1)),
        status TEXT NOT NULL DEFAULT 'ready',
        note TEXT NOT NULL DEFAULT ''
    );
    -- at most one active model (activation switches it inside one transaction)
    CREATE UNIQUE INDEX models_one_active ON models(active) WHERE active = 1;
    CREATE TABLE model_activations (
        id INTEGER PRIMARY KEY,
        model_id INTEGER NOT NULL REFERENCES models(id),
        previous_model_id INTEGER REFERENCES models(id),
        action TEXT NOT NULL CHECK (action IN ('activate', 'rollback')),
        author TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL
    );
    CREATE TABLE label_versions (
        id INTEGER PRIMARY KEY,
        scan_id INTEGER NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('model', 'correction', 'approved', 'reference')),
        path TEXT NOT NULL,
        parent_version_id INTEGER REFERENCES label_versions(id),
        model_id INTEGER REFERENCES models(id),
        author TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        dice_vs_model TEXT,
        changed_voxels INTEGER,
        UNIQUE (scan_id, version)
    );
    CREATE TABLE training_runs (
        id INTEGER PRIMARY KEY,
        status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'finished', 'failed', 'cancelled')),
        base_model_id INTEGER REFERENCES models(id),
        params TEXT NOT NULL DEFAULT '{}',
        run_dir TEXT,
        pid INTEGER,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        result_model_id INTEGER REFERENCES models(id),
        error TEXT,
        log_path TEXT
    );
    CREATE TABLE predictions (
        id INTEGER PRIMARY KEY,
        scan_id INTEGER NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
        model_id INTEGER NOT NULL REFERENCES models(id),
        prediction_path TEXT,
        uncertainty_path TEXT,
        mean_uncertainty REAL,
        foreground_voxels INTEGER,
        created_at REAL NOT NULL,
        UNIQUE (scan_id, model_id)
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def _loads(text: str | None, default: Any = None) -> Any:
    return default if text is None else json.loads(text)


def _dumps(obj: Any) -> str | None:
    return None if obj is None else json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))


@dataclass
class ScanRecord:
    """A registered scan (the voxels stay in the original file)."""

    id: int
    name: str
    image_path: str
    source: str
    shape: tuple[int, ...] | None
    spacing: tuple[float, ...] | None
    sha256: str | None
    size_bytes: int | None
    mtime: float | None
    reference_label_path: str | None
    created_at: float


@dataclass
class LabelVersion:
    """One saved, immutable label map of a scan."""

    id: int
    scan_id: int
    version: int
    kind: str
    path: str
    parent_version_id: int | None
    model_id: int | None
    author: str
    created_at: float
    note: str
    dice_vs_model: dict[str, float] | None
    changed_voxels: int | None


@dataclass
class ModelRecord:
    """A registered model version (ONNX for inference, checkpoint for fine-tuning, card)."""

    id: int
    name: str
    version: int
    onnx_path: str
    checkpoint_path: str | None
    card_path: str | None
    parent_id: int | None
    created_at: float
    metrics: dict[str, Any]
    active: bool
    status: str
    note: str


@dataclass
class TrainingRun:
    """A background fine-tuning run."""

    id: int
    status: str
    base_model_id: int | None
    params: dict[str, Any]
    run_dir: str | None
    pid: int | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    result_model_id: int | None
    error: str | None
    log_path: str | None


@dataclass
class PredictionInfo:
    """Where a model's prediction of a scan is cached, with summary numbers for the review queue."""

    id: int
    scan_id: int
    model_id: int
    prediction_path: str | None
    uncertainty_path: str | None
    mean_uncertainty: float | None
    foreground_voxels: int | None
    created_at: float


def _scan(row: sqlite3.Row) -> ScanRecord:
    return ScanRecord(row["id"], row["name"], row["image_path"], row["source"],
                      tuple(_loads(row["shape"])) if row["shape"] else None,
                      tuple(_loads(row["spacing"])) if row["spacing"] else None,
                      row["sha256"], row["size_bytes"], row["mtime"], row["reference_label_path"], row["created_at"])


def _version(row: sqlite3.Row) -> LabelVersion:
    return LabelVersion(row["id"], row["scan_id"], row["version"], row["kind"], row["path"], row["parent_version_id"],
                        row["model_id"], row["author"], row["created_at"], row["note"], _loads(row["dice_vs_model"]),
                        row["changed_voxels"])


def _model(row: sqlite3.Row) -> ModelRecord:
    return ModelRecord(row["id"], row["name"], row["version"], row["onnx_path"], row["checkpoint_path"], row["card_path"],
                       row["parent_id"], row["created_at"], _loads(row["metrics"], {}), bool(row["active"]),
                       row["status"], row["note"])


def _run(row: sqlite3.Row) -> TrainingRun:
    return TrainingRun(row["id"], row["status"], row["base_model_id"], _loads(row["params"], {}), row["run_dir"],
                       row["pid"], row["created_at"], row["started_at"], row["finished_at"], row["result_model_id"],
                       row["error"], row["log_path"])


def _prediction(row: sqlite3.Row) -> PredictionInfo:
    return PredictionInfo(row["id"], row["scan_id"], row["model_id"], row["prediction_path"], row["uncertainty_path"],
                          row["mean_uncertainty"], row["foreground_voxels"], row["created_at"])


class _Reads:
    """Read queries, shared by `Datastore` (own connection) and `Tx` (inside a write transaction)."""

    def _conn(self) -> sqlite3.Connection:  # pragma: no cover - overridden
        raise NotImplementedError

    def _all(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._reading() as conn:
            return conn.execute(sql, params).fetchall()

    def _one(self, sql: str, params: tuple = ()) -> sqlite3.Row | None:
        with self._reading() as conn:
            return conn.execute(sql, params).fetchone()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:  # pragma: no cover - overridden
        raise NotImplementedError
        yield

    # scans
    def scans(self) -> list[ScanRecord]:
        return [_scan(r) for r in self._all("SELECT * FROM scans ORDER BY name")]

    def scan(self, scan_id: int) -> ScanRecord:
        row = self._one("SELECT * FROM scans WHERE id = ?", (scan_id,))
        if row is None:
            raise SegLoopError(f"scan #{scan_id} is not in the database")
        return _scan(row)

    def scan_by_name(self, name: str) -> ScanRecord | None:
        row = self._one("SELECT * FROM scans WHERE name = ?", (name,))
        return _scan(row) if row else None

    # label versions
    def label_versions(self, scan_id: int) -> list[LabelVersion]:
        return [_version(r) for r in self._all(
            "SELECT * FROM label_versions WHERE scan_id = ? ORDER BY version", (scan_id,))]

    def label_version(self, version_id: int) -> LabelVersion:
        row = self._one("SELECT * FROM label_versions WHERE id = ?", (version_id,))
        if row is None:
            raise SegLoopError(f"label version #{version_id} is not in the database")
        return _version(row)

    def latest_versions(self, kinds: tuple[str, ...] | None = None) -> dict[int, LabelVersion]:
        """The newest label version of every scan (of the given kinds), keyed by scan id."""
        where, params = "", ()
        if kinds:
            where = f"WHERE kind IN ({','.join('?' * len(kinds))})"
            params = tuple(kinds)
        rows = self._all(f"SELECT * FROM label_versions {where} ORDER BY scan_id, version", params)
        return {r["scan_id"]: _version(r) for r in rows}

    # models
    def models(self) -> list[ModelRecord]:
        return [_model(r) for r in self._all("SELECT * FROM models ORDER BY version")]

    def model(self, model_id: int) -> ModelRecord:
        row = self._one("SELECT * FROM models WHERE id = ?", (model_id,))
        if row is None:
            raise SegLoopError(f"model #{model_id} is not in the registry")
        return _model(row)

    def model_by_version(self, version: int) -> ModelRecord:
        row = self._one("SELECT * FROM models WHERE version = ?", (version,))
        if row is None:
            raise SegLoopError(f"model version {version} is not in the registry")
        return _model(row)

    def active_model(self) -> ModelRecord | None:
        row = self._one("SELECT * FROM models WHERE active = 1")
        return _model(row) if row else None

    def activations(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._all("SELECT * FROM model_activations ORDER BY id")]

    # training runs
    def runs(self) -> list[TrainingRun]:
        return [_run(r) for r in self._all("SELECT * FROM training_runs ORDER BY id")]

    def run(self, run_id: int) -> TrainingRun:
        row = self._one("SELECT * FROM training_runs WHERE id = ?", (run_id,))
        if row is None:
            raise SegLoopError(f"training run #{run_id} is not in the database")
        return _run(row)

    def active_runs(self) -> list[TrainingRun]:
        return [_run(r) for r in self._all(
            "SELECT * FROM training_runs WHERE status IN ('queued', 'running') ORDER BY id")]

    # predictions
    def predictions(self, model_id: int | None = None) -> list[PredictionInfo]:
        if model_id is None:
            rows = self._all("SELECT * FROM predictions ORDER BY scan_id, created_at")
        else:
            rows = self._all("SELECT * FROM predictions WHERE model_id = ? ORDER BY scan_id", (model_id,))
        return [_prediction(r) for r in rows]


class Tx(_Reads):
    """An open write transaction (BEGIN IMMEDIATE: holds the single write lock until it ends)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        yield self.conn

    def _exec(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    # scans
    def upsert_scan(self, name: str, image_path: str, source: str, shape: tuple | None = None,
                    spacing: tuple | None = None, sha256: str | None = None, size_bytes: int | None = None,
                    mtime: float | None = None, reference_label_path: str | None = None) -> int:
        """Register a scan by name (updating the path and facts of an existing one); returns its id."""
        if source not in ScanSource.__members__.values():
            raise ValueError(f"scan source must be one of {[s.value for s in ScanSource]}")
        self._exec(
            """INSERT INTO scans (name, image_path, source, shape, spacing, sha256, size_bytes, mtime,
                                  reference_label_path, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(name) DO UPDATE SET image_path = excluded.image_path, shape = excluded.shape,
                   spacing = excluded.spacing, sha256 = excluded.sha256, size_bytes = excluded.size_bytes,
                   mtime = excluded.mtime,
                   reference_label_path = COALESCE(excluded.reference_label_path, scans.reference_label_path)""",
            (name, image_path, source, _dumps(list(shape) if shape else None),
             _dumps(list(spacing) if spacing else None), sha256, size_bytes, mtime, reference_label_path, time.time()))
        return int(self._exec("SELECT id FROM scans WHERE name = ?", (name,)).fetchone()[0])

    # label versions
    def max_label_version(self, scan_id: int) -> int:
        return int(self._exec("SELECT COALESCE(MAX(version), 0) FROM label_versions WHERE scan_id = ?",
                              (scan_id,)).fetchone()[0])

    def label_paths(self, scan_id: int) -> set[str]:
        return {r[0] for r in self._exec("SELECT path FROM label_versions WHERE scan_id = ?", (scan_id,))}

    def insert_label_version(self, scan_id: int, version: int, kind: str, path: str, parent_version_id: int | None,
                             model_id: int | None, author: str, note: str, dice_vs_model: dict | None,
                             changed_voxels: int | None) -> int:
        if kind not in LabelKind.__members__.values():
            raise ValueError(f"label version kind must be one of {[k.value for k in LabelKind]}")
        cur = self._exec(
            """INSERT INTO label_versions (scan_id, version, kind, path, parent_version_id, model_id, author,
                                           created_at, note, dice_vs_model, changed_voxels)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (scan_id, version, kind, path, parent_version_id, model_id, author, time.time(), note,
             _dumps(dice_vs_model), changed_voxels))
        return int(cur.lastrowid)

    # models
    def max_model_version(self) -> int:
        return int(self._exec("SELECT COALESCE(MAX(version), 0) FROM models").fetchone()[0])

    def insert_model(self, name: str, version: int, onnx_path: str, checkpoint_path: str | None,
                     card_path: str | None, parent_id: int | None, metrics: dict, status: str = "ready",
                     note: str = "") -> int:
        cur = self._exec(
            """INSERT INTO models (name, version, onnx_path, checkpoint_path, card_path, parent_id, created_at,
                                   metrics, active, status, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)""",
            (name, version, onnx_path, checkpoint_path, card_path, parent_id, time.time(), _dumps(metrics or {}),
             status, note))
        return int(cur.lastrowid)

    def set_active_model(self, model_id: int, action: str, author: str = "") -> None:
        """Make `model_id` the only active model and record it in the activation history."""
        prev = self._exec("SELECT id FROM models WHERE active = 1").fetchone()
        self._exec("UPDATE models SET active = 0 WHERE active = 1")
        if self._exec("UPDATE models SET active = 1 WHERE id = ?", (model_id,)).rowcount != 1:
            raise SegLoopError(f"model #{model_id} is not in the registry")
        self._exec("INSERT INTO model_activations (model_id, previous_model_id, action, author, created_at) "
                   "VALUES (?, ?, ?, ?, ?)", (model_id, prev[0] if prev else None, action, author, time.time()))

    # training runs
    def insert_run(self, base_model_id: int | None, params: dict) -> int:
        cur = self._exec("INSERT INTO training_runs (status, base_model_id, params, created_at) VALUES ('queued', ?, ?, ?)",
                         (base_model_id, _dumps(params), time.time()))
        return int(cur.lastrowid)

    def update_run(self, run_id: int, **fields: Any) -> None:
        """Set columns of a run (status, pid, run_dir, log_path, started_at, finished_at, result_model_id, error, params)."""
        allowed = {"status", "pid", "run_dir", "log_path", "started_at", "finished_at", "result_model_id", "error",
                   "params"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"unknown training run fields: {sorted(bad)}")
        if "params" in fields:
            fields["params"] = _dumps(fields["params"])
        cols = ", ".join(f"{k} = ?" for k in fields)
        self._exec(f"UPDATE training_runs SET {cols} WHERE id = ?", (*fields.values(), run_id))

    # predictions
    def upsert_prediction(self, scan_id: int, model_id: int, prediction_path: str | None,
                          uncertainty_path: str | None, mean_uncertainty: float | None,
                          foreground_voxels: int | None) -> int:
        self._exec(
            """INSERT INTO predictions (scan_id, model_id, prediction_path, uncertainty_path, mean_uncertainty,
                                        foreground_voxels, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(scan_id, model_id) DO UPDATE SET prediction_path = excluded.prediction_path,
                   uncertainty_path = excluded.uncertainty_path, mean_uncertainty = excluded.mean_uncertainty,
                   foreground_voxels = excluded.foreground_voxels, created_at = excluded.created_at""",
            (scan_id, model_id, prediction_path, uncertainty_path,
             None if mean_uncertainty is None else float(mean_uncertainty),
             None if foreground_voxels is None else int(foreground_voxels), time.time()))
        return int(self._exec("SELECT id FROM predictions WHERE scan_id = ? AND model_id = ?",
                              (scan_id, model_id)).fetchone()[0])


def resolve_db_path(url: str | None = None, workspace: str | Path | None = None) -> tuple[Path, Path]:
    """(database file, workspace folder) from an explicit URL, SEGLOOP_DB_URL, or the workspace default."""
    ws = Path(workspace).expanduser().resolve() if workspace else None
    url = url or os.environ.get("SEGLOOP_DB_URL", "").strip() or None
    if url:
        if not url.startswith("sqlite:///"):
            raise SegLoopError(f"database URL {url!r} is not supported; use sqlite:///path/to/segloop.db")
        db = Path(url[len("sqlite:///"):]).expanduser().resolve()
        return db, ws or db.parent
    ws = ws or workspace_dir()
    return ws / "segloop.db", ws


class Datastore(_Reads):
    """SegLoop's database. Cheap to create; each call opens a short-lived connection (thread/process safe)."""

    def __init__(self, url: str | None = None, workspace: str | Path | None = None, busy_timeout_s: float = 60.0):
        self.path, self.workspace = resolve_db_path(url, workspace)
        self.url = f"sqlite:///{self.path}"
        self.busy_timeout_s = busy_timeout_s
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.migrate()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout_s, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction (BEGIN IMMEDIATE): committed on success, rolled back on any exception.

        Taking the write lock up front makes read-then-write sequences (allocating the next version
        number) safe between processes: a second writer waits up to `busy_timeout_s`.
        """
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def schema_version(self) -> int:
        with self._reading() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> int:
        """Bring the schema up to `SCHEMA_VERSION` (idempotent, one transaction per step); returns the version."""
        conn = self._connect()
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            current = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if current > SCHEMA_VERSION:
                raise SegLoopError(f"{self.path}: database schema {current} is newer than this SegLoop ({SCHEMA_VERSION})")
            while current < SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    now = int(conn.execute("PRAGMA user_version").fetchone()[0])
                    if now == current:  # another process may have migrated meanwhile
                        for statement in MIGRATIONS[current].split(";"):
                            if statement.strip():
                                conn.execute(statement)
                        conn.execute(f"PRAGMA user_version = {current + 1}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                current = int(conn.execute("PRAGMA user_version").fetchone()[0])
            return current
        finally:
            conn.close()

    # convenience writes (each its own transaction)
    def add_scan(self, name: str, image_path: str | Path, source: str = ScanSource.UPLOADED,
                 reference_label_path: str | Path | None = None, sha256: str | None = None) -> ScanRecord:
        """Register one scan file by path (header facts only; voxels are not read or copied)."""
        facts = _file_facts(Path(image_path))
        with self.write() as tx:
            sid = tx.upsert_scan(name, str(Path(image_path).resolve()), source, sha256=sha256,
                                 reference_label_path=str(reference_label_path) if reference_label_path else None,
                                 **facts)
        return self.scan(sid)

    def import_folder(self, folder: str | Path, source: str = ScanSource.IMPORTED) -> list[ScanRecord]:
        """Register every scan of a folder by path (no copies), with its reference label when there is one.

        Any layout `segloop.data.folders.list_cases` reads (MSD, NIfTI/NRRD/MHA files, DICOM series folders).
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise SegLoopError(f"{folder}: not a folder")
        entries = [(c.name, str(c.image_path), str(c.label_path) if c.label_path else None)
                   for c in list_cases(folder)]
        if not entries:
            raise SegLoopError(f"{folder}: no scans found")
        facts = [(n, p, lbl, _file_facts(Path(p))) for n, p, lbl in entries]
        with self.write() as tx:
            ids = [tx.upsert_scan(n, str(Path(p).resolve()), source, reference_label_path=lbl, **f)
                   for n, p, lbl, f in facts]
        return [self.scan(i) for i in ids]

    def record_prediction(self, scan_id: int, model_id: int, prediction_path: str | Path | None = None,
                          uncertainty_path: str | Path | None = None, mean_uncertainty: float | None = None,
                          foreground_voxels: int | None = None) -> PredictionInfo:
        """Remember where a model's prediction of a scan is cached (one row per scan and model)."""
        with self.write() as tx:
            pid = tx.upsert_prediction(scan_id, model_id, str(prediction_path) if prediction_path else None,
                                       str(uncertainty_path) if uncertainty_path else None, mean_uncertainty,
                                       foreground_voxels)
        return next(p for p in self.predictions() if p.id == pid)


def _file_facts(path: Path) -> dict[str, Any]:
    """Size, mtime and (for NIfTI, from the header only) shape and spacing of a scan file."""
    out: dict[str, Any] = {}
    try:
        st = path.stat()
        out.update(size_bytes=int(st.st_size), mtime=float(st.st_mtime))
    except OSError:
        pass
    if path.name.lower().endswith((".nii", ".nii.gz")):
        try:
            img = nib.load(str(path))  # reads the header only
            out.update(shape=tuple(int(s) for s in img.shape[:3]),
                       spacing=tuple(float(z) for z in img.header.get_zooms()[:3]))
        except Exception:
            pass
    return out
