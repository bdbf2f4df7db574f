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
from segloop.io.readers import load_scan
from segloop.io.volume import content_id
from segloop.store.scan_links import unique_name
from segloop.store.vocabulary import LabelKind, ScanSource

#: Schema migrations; entry i brings the schema from version i to i + 1 (PRAGMA user_version).
MIGRATIONS: list = [
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
MIGRATIONS.append(
    # Schema 2: a scan is identified by its content (`sha256`: voxels plus geometry, see
    # `segloop.io.volume.content_id`), never by its name; names become plain, non-unique display names.
    # Rows registered before keep sha256 NULL until the scan is opened again (`predictions.ensure_scan`).
    # SQLite cannot drop a UNIQUE constraint, so the table is rebuilt (foreign keys are off meanwhile,
    # see `Datastore.migrate`, so the rows that point at scans are kept as they are).
    """
    CREATE TABLE scans_v2 (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        image_path TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('uploaded', 'imported', 'datadir')),
        shape TEXT,
        spacing TEXT,
        sha256 TEXT UNIQUE,
        size_bytes INTEGER,
        mtime REAL,
        reference_label_path TEXT,
        created_at REAL NOT NULL
    );
    INSERT INTO scans_v2 SELECT id, name, image_path, source, shape, spacing, NULL, size_bytes, mtime,
        reference_label_path, created_at FROM scans;
    DROP TABLE scans;
    ALTER TABLE scans_v2 RENAME TO scans;
    CREATE INDEX scans_by_name ON scans(name);
    """
)
MIGRATIONS.append(
    # Schema 3: who did it, from the sign-in (`segloop.store.identity`): the subject and e-mail of the person
    # behind every label version, activation and training run (empty for rows made before, or by the model);
    # the roles given in the app; and the audit trail, append-only: triggers refuse any UPDATE, DELETE or
    # INSERT OR REPLACE (whose delete fires no delete trigger).
    """
    ALTER TABLE label_versions ADD COLUMN author_subject TEXT NOT NULL DEFAULT '';
    ALTER TABLE label_versions ADD COLUMN author_email TEXT NOT NULL DEFAULT '';
    ALTER TABLE model_activations ADD COLUMN author_subject TEXT NOT NULL DEFAULT '';
    ALTER TABLE model_activations ADD COLUMN author_email TEXT NOT NULL DEFAULT '';
    ALTER TABLE training_runs ADD COLUMN started_by TEXT NOT NULL DEFAULT '';
    ALTER TABLE training_runs ADD COLUMN started_by_subject TEXT NOT NULL DEFAULT '';
    ALTER TABLE training_runs ADD COLUMN started_by_email TEXT NOT NULL DEFAULT '';
    CREATE TABLE roles (
        principal TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('none', 'viewer', 'annotator', 'reviewer', 'admin')),
        granted_by_subject TEXT NOT NULL DEFAULT '',
        granted_by_email TEXT NOT NULL DEFAULT '',
        granted_at REAL NOT NULL
    );
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at REAL NOT NULL,
        actor_subject TEXT NOT NULL,
        actor_email TEXT NOT NULL DEFAULT '',
        actor_name TEXT NOT NULL DEFAULT '',
        actor_role TEXT NOT NULL DEFAULT '',
        action TEXT NOT NULL CHECK (action IN ('save', 'approve', 'activate', 'rollback', 'train_start',
                                               'train_cancel', 'role_change')),
        target TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: entries cannot be changed'); END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: entries cannot be deleted'); END;
    CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log
    WHEN EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id)
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: entries cannot be replaced'); END;
    """
)



def _unique_scan_names(conn: sqlite3.Connection) -> None:
    """Schema 4: display names become unique in the workspace (`segloop.store.scan_links.unique_name`).

    Schema 2 made names plain display names, so a workspace may hold several scans called "T1w": the
    oldest keeps the name, the others become "T1w (2)", "T1w (3)", … in the order they were added. Only
    names change; ids, content ids and every version stay as they were.
    """
    rows = conn.execute("SELECT id, name FROM scans ORDER BY id").fetchall()
    first: dict[str, int] = {}
    for sid, name in rows:
        first.setdefault(name, sid)
    used = set(first)  # every name stays with its oldest scan
    for sid, name in rows:
        if first[name] != sid:
            new = unique_name(name, used)
            used.add(new)
            conn.execute("UPDATE scans SET name = ? WHERE id = ?", (new, sid))
    conn.execute("CREATE UNIQUE INDEX scans_unique_name ON scans(name)")


MIGRATIONS.append(_unique_scan_names)  # a step may be a function of the connection, run inside its transaction

SCHEMA_VERSION = len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """Split a migration into its SQL statements (a trigger body's own semicolons do not end one)."""
    out, buf = [], ""
    for part in script.split(";"):
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n;"):
                out.append(buf.strip())
            buf = ""
    if buf.strip(" \n;"):
        out.append(buf.strip())
    return out


def _loads(text: str | None, default: Any = None) -> Any:
    return default if text is None else json.loads(text)


def _dumps(obj: Any) -> str | None:
    return None if obj is None else json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))


@dataclass
class ScanRecord:
    """A registered scan (the voxels stay in the original file): one row of the ``scans`` table.

    Parameters
    ----------
    id : int
        Row id.
    name : str
        Display name, unique in the workspace (schema 4). It is for people; the scan's identity is its
        content id (`sha256`), which `Tx.upsert_scan` registers by.
    image_path : str
        Absolute path of the scan file, or of the folder holding a DICOM series.
    source : str
        A `ScanSource` value: "uploaded", "imported" or "datadir".
    shape : tuple of 3 int or None
        Voxel counts from the NIfTI header, in the FILE's own voxel order (not RAS); None for other
        formats or an unreadable header.
    spacing : tuple of 3 float or None
        Voxel size in mm from the NIfTI header (``get_zooms``), file voxel order; None as for `shape`.
    sha256 : str or None
        The scan's content id, `segloop.io.volume.content_id`: sha256 of its voxels and geometry (not of
        the file, so the same image as .nii or .nii.gz, from a data folder or an upload, is one scan);
        unique, the identity `Tx.upsert_scan` registers by. None only for a scan registered before
        schema 2 and not opened since.
    size_bytes : int or None
        File size in bytes when it was registered (None when the path could not be stat'ed).
    mtime : float or None
        File modification time (Unix seconds) when it was registered.
    reference_label_path : str or None
        Path of the imported ground-truth label map, if any.
    created_at : float
        Unix time of the first registration (re-registering keeps it).
    """

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
    """One saved, immutable label map of a scan: one row of the ``label_versions`` table.

    Parameters
    ----------
    id : int
        Row id (unique over all scans).
    scan_id : int
        The scan it labels.
    version : int
        Number within the scan: 1, 2, 3... in order of saving.
    kind : str
        A `LabelKind` value: "model", "correction", "approved" or "reference".
    path : str
        Absolute path of the NIfTI file, ``<workspace>/labels/<scan>/v<NNN>_<kind>.nii.gz``, on the
        scan file's own grid.
    parent_version_id : int or None
        Row id of the version it was made from (the approved one, for an 'approved' version).
    model_id : int or None
        The model whose prediction it is or descends from.
    author : str
        Who saved it, as shown: the signed-in person's e-mail, else the name given ("model" for
        predictions); may be empty.
    created_at : float
        Unix time of the save.
    note : str
        Free text given with the save.
    dice_vs_model : dict of str to float or None
        Dice per label value (keys are the values as strings, e.g. "1") against the nearest 'model'
        version up its parent chain; None when there is none (e.g. a model prediction saved without parent).
    changed_voxels : int or None
        Voxels that differ from the parent version; None without a parent, 0 for an approval.
    author_subject : str, optional
        The saver's identity: the sign-in subject (``sub``), ``local:<OS user>`` in local mode; empty
        for a model's prediction and for versions saved before schema 3.
    author_email : str, optional
        The signed-in saver's e-mail address; empty in local mode.
    """

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
    author_subject: str = ""
    author_email: str = ""


@dataclass
class ModelRecord:
    """A registered model version (ONNX for inference, checkpoint for fine-tuning, card): one ``models`` row.

    Parameters
    ----------
    id : int
        Row id.
    name : str
        Model name (the card's name unless given at registration).
    version : int
        Registry-wide version number, unique: 1, 2, 3...
    onnx_path : str
        Absolute path of the ONNX file inside ``<workspace>/models/v<version>/``.
    checkpoint_path : str or None
        Path of the torch checkpoint copy (needed to fine-tune), or None.
    card_path : str or None
        Path of the card copy (``<stem>.card.json``), or None.
    parent_id : int or None
        Row id of the model it was fine-tuned from.
    created_at : float
        Unix time of registration.
    metrics : dict
        Copy of the card's metrics at registration, as the schema-2 dict of
        `segloop.model.card.Metrics` (``{}`` without a card).
    active : bool
        Whether inference uses it now (at most one model is active).
    status : str
        Row status; "ready" for every model registered by SegLoop.
    note : str
        Free text, e.g. "shipped model" or "fine-tuned by run #3".
    """

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
    """A background fine-tuning run: one row of the ``training_runs`` table.

    Parameters
    ----------
    id : int
        Row id (the run number shown to users).
    status : str
        A `RunState` value: "queued", "running", "finished", "failed" or "cancelled".
    base_model_id : int or None
        The model being fine-tuned.
    params : dict
        The run's settings (`segloop.training.jobs.DEFAULT_PARAMS` overridden by the caller's).
    run_dir : str or None
        Run folder, ``<workspace>/runs/run-<NNNN>``.
    pid : int or None
        Process id of the background job.
    created_at, started_at, finished_at : float or None
        Unix times of queueing (always set), of the job starting and of the run ending.
    result_model_id : int or None
        The model registered by a finished run.
    error : str or None
        One-line reason of a failed or cancelled run.
    log_path : str or None
        The job's combined stdout/stderr log, ``<run_dir>/job.log``.
    started_by, started_by_subject, started_by_email : str, optional
        Who started it: as shown (e-mail or name), sign-in subject, e-mail (empty before schema 3).
    """

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
    started_by: str = ""
    started_by_subject: str = ""
    started_by_email: str = ""


@dataclass
class RoleAssignment:
    """A role given in the app to an e-mail address or a whole domain: one row of the ``roles`` table.

    Parameters
    ----------
    principal : str
        A lower-case e-mail address (``ann@example.org``) or domain (``@example.org``).
    role : str
        A `Role` value.
    granted_by_subject, granted_by_email : str
        The admin who gave it.
    granted_at : float
        Unix time it was given (or last changed).
    """

    principal: str
    role: str
    granted_by_subject: str
    granted_by_email: str
    granted_at: float


@dataclass
class AuditEntry:
    """One line of the audit trail, never changed once written: one row of the ``audit_log`` table.

    Parameters
    ----------
    id : int
        Row id, increasing with time.
    created_at : float
        Unix time of the action.
    actor_subject, actor_email, actor_name : str
        Who did it: sign-in subject (``local:<OS user>`` in local mode), e-mail, display name.
    actor_role : str
        Their role when they did it ("local" in single-user local mode).
    action : str
        An `AuditAction` value.
    target : str
        What it was done to, in words ("scan 3 (case_001) v4", "model v2", "run #5", an e-mail).
    detail : dict
        Ids and values behind it (stored as JSON).
    """

    id: int
    created_at: float
    actor_subject: str
    actor_email: str
    actor_name: str
    actor_role: str
    action: str
    target: str
    detail: dict[str, Any]


@dataclass
class PredictionInfo:
    """Where a model's prediction of a scan is cached, with summary numbers for the review queue.

    One row of the ``predictions`` table; at most one per (scan, model).

    Parameters
    ----------
    id : int
        Row id.
    scan_id, model_id : int
        The scan and the model that predicted it.
    prediction_path : str or None
        The prediction's label file (its 'model' label version).
    uncertainty_path : str or None
        The uncertainty map, a ``.npy`` of float16 in RAS voxel order, shape (X, Y, Z).
    mean_uncertainty : float or None
        Mean normalised entropy (0..1) over the predicted foreground; 0.0 when none was predicted.
    foreground_voxels : int or None
        Number of voxels predicted as any label other than 0.
    created_at : float
        Unix time of the latest write of the row.
    """

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
                        row["changed_voxels"], row["author_subject"], row["author_email"])


def _model(row: sqlite3.Row) -> ModelRecord:
    return ModelRecord(row["id"], row["name"], row["version"], row["onnx_path"], row["checkpoint_path"], row["card_path"],
                       row["parent_id"], row["created_at"], _loads(row["metrics"], {}), bool(row["active"]),
                       row["status"], row["note"])


def _run(row: sqlite3.Row) -> TrainingRun:
    return TrainingRun(row["id"], row["status"], row["base_model_id"], _loads(row["params"], {}), row["run_dir"],
                       row["pid"], row["created_at"], row["started_at"], row["finished_at"], row["result_model_id"],
                       row["error"], row["log_path"], row["started_by"], row["started_by_subject"],
                       row["started_by_email"])


def _audit(row: sqlite3.Row) -> AuditEntry:
    return AuditEntry(row["id"], row["created_at"], row["actor_subject"], row["actor_email"], row["actor_name"],
                      row["actor_role"], row["action"], row["target"], _loads(row["detail"], {}))


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
        """List every registered scan.

        Returns
        -------
        list of ScanRecord
            Sorted by name.
        """
        return [_scan(r) for r in self._all("SELECT * FROM scans ORDER BY name")]

    def scan(self, scan_id: int) -> ScanRecord:
        """Fetch one scan by row id.

        Parameters
        ----------
        scan_id : int
            Row id of the scan.

        Returns
        -------
        ScanRecord

        Raises
        ------
        SegLoopError
            When no scan has that id.
        """
        row = self._one("SELECT * FROM scans WHERE id = ?", (scan_id,))
        if row is None:
            raise SegLoopError(f"scan #{scan_id} is not in the database")
        return _scan(row)

    def scans_named(self, name: str) -> list[ScanRecord]:
        """List the scans shown under a display name (a scan's identity is its content id, not its name).

        Parameters
        ----------
        name : str
            Display name, exactly as registered.

        Returns
        -------
        list of ScanRecord
            At most one since schema 4 made display names unique in the workspace; empty when no scan
            has that name.
        """
        return [_scan(r) for r in self._all("SELECT * FROM scans WHERE name = ? ORDER BY id", (name,))]

    def scans_with_id_prefix(self, prefix: str) -> list[ScanRecord]:
        """List the scans whose content id starts with `prefix` (a link's short id, `scan_links.short_id`).

        Parameters
        ----------
        prefix : str
            Lowercase hex digits; fewer than 4 match nothing (too short to mean one scan).

        Returns
        -------
        list of ScanRecord
            Oldest first; normally one or none.
        """
        prefix = prefix.strip().lower()
        if len(prefix) < 4 or any(c not in "0123456789abcdef" for c in prefix):
            return []
        return [_scan(r) for r in self._all("SELECT * FROM scans WHERE substr(sha256, 1, ?) = ? ORDER BY id",
                                            (len(prefix), prefix))]

    def scan_names(self) -> set[str]:
        """The display names in use (unique in the workspace since schema 4)."""
        return {r[0] for r in self._all("SELECT name FROM scans")}

    def scan_by_content(self, content_id: str) -> ScanRecord | None:
        """Fetch the scan with this content id (`segloop.io.volume.content_id`: voxels plus geometry).

        Returns
        -------
        ScanRecord or None
            None when no registered scan has that content.
        """
        row = self._one("SELECT * FROM scans WHERE sha256 = ?", (content_id,))
        return _scan(row) if row else None

    # label versions
    def label_versions(self, scan_id: int) -> list[LabelVersion]:
        """List the label versions of one scan.

        Parameters
        ----------
        scan_id : int
            Row id of the scan.

        Returns
        -------
        list of LabelVersion
            Oldest (version 1) first; empty for an unknown scan.
        """
        return [_version(r) for r in self._all(
            "SELECT * FROM label_versions WHERE scan_id = ? ORDER BY version", (scan_id,))]

    def label_version(self, version_id: int) -> LabelVersion:
        """Fetch one label version by row id.

        Parameters
        ----------
        version_id : int
            Row id of the version (not its per-scan version number).

        Returns
        -------
        LabelVersion

        Raises
        ------
        SegLoopError
            When no version has that id.
        """
        row = self._one("SELECT * FROM label_versions WHERE id = ?", (version_id,))
        if row is None:
            raise SegLoopError(f"label version #{version_id} is not in the database")
        return _version(row)

    def latest_versions(self, kinds: tuple[str, ...] | None = None) -> dict[int, LabelVersion]:
        """Return the newest label version of every scan (of the given kinds), keyed by scan id.

        Parameters
        ----------
        kinds : tuple of str, optional
            `LabelKind` values to consider; None or empty: every kind.

        Returns
        -------
        dict of int to LabelVersion
            Scan id -> its highest-numbered version among `kinds`; scans without one are left out.
        """
        where, params = "", ()
        if kinds:
            where = f"WHERE kind IN ({','.join('?' * len(kinds))})"
            params = tuple(kinds)
        rows = self._all(f"SELECT * FROM label_versions {where} ORDER BY scan_id, version", params)
        return {r["scan_id"]: _version(r) for r in rows}

    # models
    def models(self) -> list[ModelRecord]:
        """List every registered model.

        Returns
        -------
        list of ModelRecord
            Oldest version first.
        """
        return [_model(r) for r in self._all("SELECT * FROM models ORDER BY version")]

    def model(self, model_id: int) -> ModelRecord:
        """Fetch one model by row id.

        Parameters
        ----------
        model_id : int
            Row id of the model (not its version number).

        Returns
        -------
        ModelRecord

        Raises
        ------
        SegLoopError
            When no model has that id.
        """
        row = self._one("SELECT * FROM models WHERE id = ?", (model_id,))
        if row is None:
            raise SegLoopError(f"model #{model_id} is not in the registry")
        return _model(row)

    def model_by_version(self, version: int) -> ModelRecord:
        """Fetch one model by its registry version number.

        Parameters
        ----------
        version : int
            Version number as shown to users ("v3" is 3).

        Returns
        -------
        ModelRecord

        Raises
        ------
        SegLoopError
            When no model has that version.
        """
        row = self._one("SELECT * FROM models WHERE version = ?", (version,))
        if row is None:
            raise SegLoopError(f"model version {version} is not in the registry")
        return _model(row)

    def active_model(self) -> ModelRecord | None:
        """Fetch the model inference uses now.

        Returns
        -------
        ModelRecord or None
            None when no model is active (an empty registry).
        """
        row = self._one("SELECT * FROM models WHERE active = 1")
        return _model(row) if row else None

    def activations(self) -> list[dict[str, Any]]:
        """List the activation history.

        Returns
        -------
        list of dict
            One dict per activation or rollback, oldest first, with keys ``id``, ``model_id``,
            ``previous_model_id`` (None for the first), ``action`` ("activate" or "rollback"), ``author``
            (as shown), ``author_subject`` and ``author_email`` (see `LabelVersion`) and ``created_at``
            (Unix time).
        """
        return [dict(r) for r in self._all("SELECT * FROM model_activations ORDER BY id")]

    # roles and the audit trail
    def role_assignments(self) -> list[RoleAssignment]:
        """List the roles given in the app (those of the roles file are not in the database).

        Returns
        -------
        list of RoleAssignment
            Sorted by principal (domains, which start with "@", first).
        """
        return [RoleAssignment(r["principal"], r["role"], r["granted_by_subject"], r["granted_by_email"],
                               r["granted_at"]) for r in self._all("SELECT * FROM roles ORDER BY principal")]

    def audit_entries(self, limit: int | None = None) -> list[AuditEntry]:
        """List the audit trail, oldest first.

        Parameters
        ----------
        limit : int, optional
            Only the newest `limit` entries (still oldest first); None: all.

        Returns
        -------
        list of AuditEntry
        """
        if limit is None:
            rows = self._all("SELECT * FROM audit_log ORDER BY id")
        else:
            rows = self._all("SELECT * FROM (SELECT * FROM audit_log ORDER BY id DESC LIMIT ?) ORDER BY id",
                             (int(limit),))
        return [_audit(r) for r in rows]

    # training runs
    def runs(self) -> list[TrainingRun]:
        """List every training run.

        Returns
        -------
        list of TrainingRun
            Oldest (lowest id) first.
        """
        return [_run(r) for r in self._all("SELECT * FROM training_runs ORDER BY id")]

    def run(self, run_id: int) -> TrainingRun:
        """Fetch one training run by id.

        Parameters
        ----------
        run_id : int
            Row id of the run.

        Returns
        -------
        TrainingRun

        Raises
        ------
        SegLoopError
            When no run has that id.
        """
        row = self._one("SELECT * FROM training_runs WHERE id = ?", (run_id,))
        if row is None:
            raise SegLoopError(f"training run #{run_id} is not in the database")
        return _run(row)

    def active_runs(self) -> list[TrainingRun]:
        """List the runs that have not ended (status "queued" or "running"), as recorded.

        A run whose process died is still listed until `segloop.training.jobs.refresh_runs` marks it failed.

        Returns
        -------
        list of TrainingRun
            Oldest first.
        """
        return [_run(r) for r in self._all(
            "SELECT * FROM training_runs WHERE status IN ('queued', 'running') ORDER BY id")]

    # predictions
    def predictions(self, model_id: int | None = None) -> list[PredictionInfo]:
        """List the stored prediction summaries.

        Parameters
        ----------
        model_id : int, optional
            Only this model's predictions; None: every model's.

        Returns
        -------
        list of PredictionInfo
            Ordered by scan id (then by time written, when all models are listed).
        """
        if model_id is None:
            rows = self._all("SELECT * FROM predictions ORDER BY scan_id, created_at")
        else:
            rows = self._all("SELECT * FROM predictions WHERE model_id = ? ORDER BY scan_id", (model_id,))
        return [_prediction(r) for r in rows]


class Tx(_Reads):
    """An open write transaction (BEGIN IMMEDIATE: holds the single write lock until it ends).

    Get one from `Datastore.write`, which commits or rolls it back; the read methods of `Datastore`
    work here too and see the transaction's own uncommitted writes.

    Parameters
    ----------
    conn : sqlite3.Connection
        A connection with the transaction already begun.
    """

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        yield self.conn

    def _exec(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    # scans
    def upsert_scan(self, name: str, image_path: str, source: str, content_id: str, shape: tuple | None = None,
                    spacing: tuple | None = None, size_bytes: int | None = None, mtime: float | None = None,
                    reference_label_path: str | None = None) -> int:
        """Register a scan by its content (a scan with the same content gets the new path and facts); returns its id.

        Parameters
        ----------
        name : str
            Display name of a new scan, made unique in the workspace ("T1w (2)" when a scan is called
            "T1w", `scan_links.unique_name`); an existing scan keeps its name.
        image_path : str
            Path of the scan file or DICOM folder, stored as given.
        source : str
            A `ScanSource` value; recorded for a new scan only (an existing scan keeps its source).
        content_id : str
            The scan's identity, `segloop.io.volume.content_id` of its voxels and geometry: the same
            image opened from two places is one scan, two images with one name are two.
        shape, spacing : tuple, optional
            Header facts (see `ScanRecord`); stored as JSON lists, replacing the old ones.
        size_bytes : int, optional
            File size in bytes.
        mtime : float, optional
            File modification time, Unix seconds.
        reference_label_path : str, optional
            Ground-truth label file; None keeps the one already recorded.

        Returns
        -------
        int
            Row id of the inserted or updated scan.

        Raises
        ------
        ValueError
            When `source` is not a `ScanSource` value or `content_id` is empty.
        """
        if source not in ScanSource.__members__.values():
            raise ValueError(f"scan source must be one of {[s.value for s in ScanSource]}")
        if not content_id:
            raise ValueError("a scan needs its content id")
        if self._one("SELECT id FROM scans WHERE sha256 = ?", (content_id,)) is None:
            name = unique_name(name, self.scan_names())  # a new scan never shares a display name
        self._exec(
            """INSERT INTO scans (name, image_path, source, shape, spacing, sha256, size_bytes, mtime,
                                  reference_label_path, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(sha256) DO UPDATE SET image_path = excluded.image_path, shape = excluded.shape,
                   spacing = excluded.spacing, size_bytes = excluded.size_bytes, mtime = excluded.mtime,
                   reference_label_path = COALESCE(excluded.reference_label_path, scans.reference_label_path)""",
            (name, image_path, source, _dumps(list(shape) if shape else None),
             _dumps(list(spacing) if spacing else None), content_id, size_bytes, mtime, reference_label_path,
             time.time()))
        return int(self._exec("SELECT id FROM scans WHERE sha256 = ?", (content_id,)).fetchone()[0])

    def rename_scan(self, scan_id: int, name: str) -> None:
        """Give a scan another display name. Only the name changes: its id, content id and every version
        stay, so links by id (``?scan=``) and everything saved keep pointing at it.

        Raises
        ------
        SegLoopError
            When the name is empty, another scan already has it, or no scan has `scan_id`.
        """
        name = name.strip()
        if not name:
            raise SegLoopError("a scan's name cannot be empty")
        self.scan(scan_id)  # raises for an unknown id
        other = self._one("SELECT id FROM scans WHERE name = ? AND id != ?", (name, scan_id))
        if other is not None:
            raise SegLoopError(f"scan #{other['id']} is already called {name!r}: names tell scans apart, pick another")
        self._exec("UPDATE scans SET name = ? WHERE id = ?", (name, scan_id))

    def adopt_legacy_scan(self, scan_id: int, content_id: str) -> None:
        """Give a scan registered before schema 2 (no content id yet) its content id."""
        self._exec("UPDATE scans SET sha256 = ? WHERE id = ? AND sha256 IS NULL", (content_id, scan_id))

    # label versions
    def max_label_version(self, scan_id: int) -> int:
        """Return the highest version number of a scan's label versions.

        Parameters
        ----------
        scan_id : int
            Row id of the scan.

        Returns
        -------
        int
            0 when the scan has none (so the next version is this + 1).
        """
        return int(self._exec("SELECT COALESCE(MAX(version), 0) FROM label_versions WHERE scan_id = ?",
                              (scan_id,)).fetchone()[0])

    def label_paths(self, scan_id: int) -> set[str]:
        """Return the file paths of a scan's registered label versions.

        Parameters
        ----------
        scan_id : int
            Row id of the scan.

        Returns
        -------
        set of str
            Paths as stored; empty when the scan has none.
        """
        return {r[0] for r in self._exec("SELECT path FROM label_versions WHERE scan_id = ?", (scan_id,))}

    def insert_label_version(self, scan_id: int, version: int, kind: str, path: str, parent_version_id: int | None,
                             model_id: int | None, author: str, note: str, dice_vs_model: dict | None,
                             changed_voxels: int | None, author_subject: str = "", author_email: str = "") -> int:
        """Insert one label version row (the file must already be in place).

        Parameters
        ----------
        scan_id : int
            Row id of the scan.
        version : int
            The scan's next version number (`max_label_version` + 1).
        kind : str
            A `LabelKind` value.
        path : str
            The version's label file.
        parent_version_id, model_id : int or None
            See `LabelVersion`.
        author, note : str
            Who saved it, and free text.
        dice_vs_model : dict or None
            Dice per label value against the model prediction it descends from; stored as JSON.
        changed_voxels : int or None
            Voxels changed relative to the parent.
        author_subject, author_email : str, optional
            The saver's sign-in subject and e-mail (see `LabelVersion`).

        Returns
        -------
        int
            Row id of the new version; ``created_at`` is now.

        Raises
        ------
        ValueError
            When `kind` is not a `LabelKind` value.
        sqlite3.IntegrityError
            When the scan already has that version number, or an id does not exist.
        """
        if kind not in LabelKind.__members__.values():
            raise ValueError(f"label version kind must be one of {[k.value for k in LabelKind]}")
        cur = self._exec(
            """INSERT INTO label_versions (scan_id, version, kind, path, parent_version_id, model_id, author,
                                           created_at, note, dice_vs_model, changed_voxels, author_subject,
                                           author_email)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (scan_id, version, kind, path, parent_version_id, model_id, author, time.time(), note,
             _dumps(dice_vs_model), changed_voxels, author_subject, author_email))
        return int(cur.lastrowid)

    # models
    def max_model_version(self) -> int:
        """Return the highest registered model version.

        Returns
        -------
        int
            0 for an empty registry.
        """
        return int(self._exec("SELECT COALESCE(MAX(version), 0) FROM models").fetchone()[0])

    def insert_model(self, name: str, version: int, onnx_path: str, checkpoint_path: str | None,
                     card_path: str | None, parent_id: int | None, metrics: dict, status: str = "ready",
                     note: str = "") -> int:
        """Insert one model row, inactive (the files must already be in place).

        Parameters
        ----------
        name : str
            Model name.
        version : int
            Registry version; must be unused.
        onnx_path, checkpoint_path, card_path : str or None
            The model's files (`onnx_path` is required).
        parent_id : int or None
            Row id of the model it was fine-tuned from.
        metrics : dict
            The card's metrics as a schema-2 dict, stored as JSON (None or empty: ``{}``).
        status : str, optional
            Row status.
        note : str, optional
            Free text.

        Returns
        -------
        int
            Row id of the new model.

        Raises
        ------
        sqlite3.IntegrityError
            When `version` is already taken or `parent_id` does not exist.
        """
        cur = self._exec(
            """INSERT INTO models (name, version, onnx_path, checkpoint_path, card_path, parent_id, created_at,
                                   metrics, active, status, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)""",
            (name, version, onnx_path, checkpoint_path, card_path, parent_id, time.time(), _dumps(metrics or {}),
             status, note))
        return int(cur.lastrowid)

    def set_active_model(self, model_id: int, action: str, author: str = "", author_subject: str = "",
                         author_email: str = "") -> None:
        """Make `model_id` the only active model and record it in the activation history.

        Parameters
        ----------
        model_id : int
            Row id of the model to activate.
        action : {"activate", "rollback"}
            What the history records.
        author : str, optional
            Who did it, as shown.
        author_subject, author_email : str, optional
            Their sign-in subject and e-mail.

        Returns
        -------
        None
            Side effects: every other model is deactivated and a ``model_activations`` row is inserted
            with the previously active model (even when `model_id` was already active).

        Raises
        ------
        SegLoopError
            When no model has that id.
        sqlite3.IntegrityError
            When `action` is not one of the two above.
        """
        prev = self._exec("SELECT id FROM models WHERE active = 1").fetchone()
        self._exec("UPDATE models SET active = 0 WHERE active = 1")
        if self._exec("UPDATE models SET active = 1 WHERE id = ?", (model_id,)).rowcount != 1:
            raise SegLoopError(f"model #{model_id} is not in the registry")
        self._exec("INSERT INTO model_activations (model_id, previous_model_id, action, author, created_at, "
                   "author_subject, author_email) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (model_id, prev[0] if prev else None, action, author, time.time(), author_subject, author_email))

    # training runs
    def insert_run(self, base_model_id: int | None, params: dict, started_by: tuple[str, str, str] = ("", "", "")
                   ) -> int:
        """Insert a training run with status "queued".

        Parameters
        ----------
        base_model_id : int or None
            The model to fine-tune.
        params : dict
            The run's settings, stored as JSON.
        started_by : tuple of 3 str, optional
            Who starts it: (as shown, sign-in subject, e-mail).

        Returns
        -------
        int
            Row id of the new run; ``created_at`` is now, every other field empty.
        """
        cur = self._exec("INSERT INTO training_runs (status, base_model_id, params, created_at, started_by, "
                         "started_by_subject, started_by_email) VALUES ('queued', ?, ?, ?, ?, ?, ?)",
                         (base_model_id, _dumps(params), time.time(), *started_by))
        return int(cur.lastrowid)

    def update_run(self, run_id: int, **fields: Any) -> None:
        """Set columns of a run.

        Parameters
        ----------
        run_id : int
            Row id of the run; an unknown id changes nothing.
        **fields
            At least one of ``status``, ``pid``, ``run_dir``, ``log_path``, ``started_at``, ``finished_at``
            (Unix times), ``result_model_id``, ``error`` and ``params`` (a dict, stored as JSON).

        Returns
        -------
        None

        Raises
        ------
        ValueError
            When a field name is not one of those.
        """
        allowed = {"status", "pid", "run_dir", "log_path", "started_at", "finished_at", "result_model_id", "error",
                   "params"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"unknown training run fields: {sorted(bad)}")
        if "params" in fields:
            fields["params"] = _dumps(fields["params"])
        cols = ", ".join(f"{k} = ?" for k in fields)
        self._exec(f"UPDATE training_runs SET {cols} WHERE id = ?", (*fields.values(), run_id))

    # roles and the audit trail
    def set_role_assignment(self, principal: str, role: str, granted_by_subject: str, granted_by_email: str) -> None:
        """Give (or change) the role of an e-mail address or domain.

        Parameters
        ----------
        principal : str
            Lower-case e-mail address or ``@domain``, as checked by the caller.
        role : str
            A `Role` value.
        granted_by_subject, granted_by_email : str
            The admin giving it.

        Raises
        ------
        sqlite3.IntegrityError
            When `role` is not a `Role` value.
        """
        self._exec("""INSERT INTO roles (principal, role, granted_by_subject, granted_by_email, granted_at)
                      VALUES (?, ?, ?, ?, ?)
                      ON CONFLICT(principal) DO UPDATE SET role = excluded.role,
                          granted_by_subject = excluded.granted_by_subject,
                          granted_by_email = excluded.granted_by_email, granted_at = excluded.granted_at""",
                   (principal, role, granted_by_subject, granted_by_email, time.time()))

    def delete_role_assignment(self, principal: str) -> bool:
        """Take back the role given in the app to `principal`; returns whether there was one."""
        return self._exec("DELETE FROM roles WHERE principal = ?", (principal,)).rowcount > 0

    def append_audit(self, actor_subject: str, actor_email: str, actor_name: str, actor_role: str, action: str,
                     target: str = "", detail: dict | None = None) -> int:
        """Append one entry to the audit trail (in the transaction of the action it records).

        Parameters
        ----------
        actor_subject, actor_email, actor_name, actor_role : str
            Who did it, and their role then.
        action : str
            An `AuditAction` value.
        target : str, optional
            What it was done to, in words.
        detail : dict, optional
            Ids and values behind it, stored as JSON.

        Returns
        -------
        int
            Row id of the entry; ``created_at`` is now.

        Raises
        ------
        sqlite3.IntegrityError
            When `action` is not an `AuditAction` value.
        """
        cur = self._exec(
            """INSERT INTO audit_log (created_at, actor_subject, actor_email, actor_name, actor_role, action, target,
                                      detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            (time.time(), actor_subject, actor_email, actor_name, actor_role, str(action), target,
             _dumps(detail or {})))
        return int(cur.lastrowid)

    # predictions
    def upsert_prediction(self, scan_id: int, model_id: int, prediction_path: str | None,
                          uncertainty_path: str | None, mean_uncertainty: float | None,
                          foreground_voxels: int | None) -> int:
        """Insert or replace the prediction summary of a scan by a model (one row per pair).

        Parameters
        ----------
        scan_id, model_id : int
            The scan and the model that predicted it.
        prediction_path, uncertainty_path : str or None
            Where the label file and the uncertainty map are.
        mean_uncertainty : float or None
            Mean normalised entropy over the predicted foreground.
        foreground_voxels : int or None
            Number of voxels predicted as foreground.

        Returns
        -------
        int
            Row id of the row, kept when an existing row is replaced (its ``created_at`` becomes now).

        Raises
        ------
        sqlite3.IntegrityError
            When the scan or the model does not exist.
        """
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
    """Return (database file, workspace folder) from an explicit URL, SEGLOOP_DB_URL, or the workspace default.

    Parameters
    ----------
    url : str, optional
        ``sqlite:///abs/path.db``; when None (or empty), SEGLOOP_DB_URL is used if set.
    workspace : str or pathlib.Path, optional
        Workspace folder; default: the database's folder when a URL is in play, else
        `segloop.config.workspace_dir()`.

    Returns
    -------
    db : pathlib.Path
        Absolute path of the database file (``<workspace>/segloop.db`` without a URL).
    workspace : pathlib.Path
        Absolute path of the workspace folder. Nothing is created.

    Raises
    ------
    SegLoopError
        When the URL is not a ``sqlite:///`` URL.
    """
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
    """SegLoop's database. Cheap to create; each call opens a short-lived connection (thread/process safe).

    Creating one creates the workspace and database folders when missing, switches the file to
    WAL mode and brings its schema up to date (`migrate`).

    Parameters
    ----------
    url : str, optional
        ``sqlite:///abs/path.db``; see `resolve_db_path` for the defaults.
    workspace : str or pathlib.Path, optional
        Folder for label versions, models, runs and predictions; see `resolve_db_path`.
    busy_timeout_s : float, optional
        How long a writer waits for another writer's lock before failing, in seconds.

    Attributes
    ----------
    path : pathlib.Path
        The database file.
    workspace : pathlib.Path
        The workspace folder.
    url : str
        ``sqlite:///<path>``, to hand to another process (the training job).
    busy_timeout_s : float
        As given.

    Raises
    ------
    SegLoopError
        When the URL is not supported, or the database was made by a newer SegLoop.

    Examples
    --------
    >>> import tempfile, nibabel as nib, numpy as np
    >>> tmp = tempfile.TemporaryDirectory()
    >>> nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), np.eye(4)), f"{tmp.name}/case1.nii.gz")
    >>> store = Datastore(workspace=f"{tmp.name}/workspace")
    >>> scan = store.add_scan("case1", f"{tmp.name}/case1.nii.gz")
    >>> store.scan_by_content(scan.sha256).id == scan.id, [s.id for s in store.scans_named("case1")] == [scan.id]
    (True, True)
    >>> tmp.cleanup()
    """

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
        """Open a write transaction (BEGIN IMMEDIATE): committed on success, rolled back on any exception.

        Taking the write lock up front makes read-then-write sequences (allocating the next version
        number) safe between processes: a second writer waits up to `busy_timeout_s`.

        Yields
        ------
        Tx
            The transaction; the connection is closed when the ``with`` block ends.

        Raises
        ------
        sqlite3.OperationalError
            "database is locked" when another writer holds the lock for longer than `busy_timeout_s`.
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
        """Return the database's schema version (``PRAGMA user_version``).

        Returns
        -------
        int
            `SCHEMA_VERSION` once `migrate` has run.
        """
        with self._reading() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> int:
        """Bring the schema up to `SCHEMA_VERSION` (idempotent, one transaction per step); returns the version.

        Safe when several processes migrate at once: each step re-reads the version under the write lock.
        Also puts the database in WAL journal mode (a setting stored in the file).

        Returns
        -------
        int
            The schema version reached, `SCHEMA_VERSION`.

        Raises
        ------
        SegLoopError
            When the database's schema is newer than this SegLoop's.
        """
        conn = self._connect()
        # Table rebuilds (schema 2) drop and rename a table that others reference; with foreign keys on,
        # dropping it would cascade. The switch only works outside a transaction; checked before commit.
        conn.execute("PRAGMA foreign_keys = OFF")
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
                        step = MIGRATIONS[current]
                        for statement in ([] if callable(step) else _statements(step)):
                            conn.execute(statement)
                        if callable(step):
                            step(conn)
                        conn.execute(f"PRAGMA user_version = {current + 1}")
                        broken = conn.execute("PRAGMA foreign_key_check").fetchall()
                        if broken:
                            raise SegLoopError(f"{self.path}: schema migration {current + 1} broke {len(broken)} "
                                               "references; the database was left unchanged")
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
                 reference_label_path: str | Path | None = None, content_id: str | None = None) -> ScanRecord:
        """Register one scan by path (no copy), identified by its content.

        Parameters
        ----------
        name : str
            Display name of a new scan, made unique in the workspace (`scan_links.unique_name`); an existing
            scan of the same content keeps its name.
        image_path : str or pathlib.Path
            The scan file or DICOM folder; stored resolved to an absolute path.
        source : str, optional
            A `ScanSource` value (kept unchanged for an existing scan).
        reference_label_path : str or pathlib.Path, optional
            Ground-truth label file; None keeps any already recorded.
        content_id : str, optional
            `segloop.io.volume.content_id` of the scan when the caller has it loaded; else the scan is
            read to compute it.

        Returns
        -------
        ScanRecord
            The scan as stored; size and mtime from the file system, shape and spacing from the header
            of a NIfTI file (None otherwise). One row inserted or updated, in its own transaction.

        Raises
        ------
        SegLoopError
            When the file cannot be read as a scan (the message says why).
        """
        cid = content_id or _content_id_of(Path(image_path))
        facts = _file_facts(Path(image_path))
        with self.write() as tx:
            sid = tx.upsert_scan(name, str(Path(image_path).resolve()), source, cid,
                                 reference_label_path=str(reference_label_path) if reference_label_path else None,
                                 **facts)
        return self.scan(sid)

    def import_folder(self, folder: str | Path, source: str = ScanSource.IMPORTED) -> list[ScanRecord]:
        """Register every scan of a folder by path (no copies), with its reference label when there is one.

        Any layout `segloop.data.folders.list_cases` reads (MSD, NIfTI/NRRD/MHA files, DICOM series folders).
        Each scan is read once to compute its content id, so a scan already registered from elsewhere
        (an upload of the same image) is recognised rather than duplicated.

        Parameters
        ----------
        folder : str or pathlib.Path
            The data folder.
        source : str, optional
            `ScanSource` value for newly registered scans.

        Returns
        -------
        list of ScanRecord
            One per case, sorted by case name; all rows inserted or updated in one transaction.

        Raises
        ------
        SegLoopError
            When `folder` is not a folder, holds no scans, or a scan cannot be read (nothing is registered).
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise SegLoopError(f"{folder}: not a folder")
        entries = [(c.name, str(c.image_path), str(c.label_path) if c.label_path else None)
                   for c in list_cases(folder)]
        if not entries:
            raise SegLoopError(f"{folder}: no scans found")
        facts = [(n, p, lbl, _content_id_of(Path(p)), _file_facts(Path(p))) for n, p, lbl in entries]
        with self.write() as tx:
            ids = [tx.upsert_scan(n, str(Path(p).resolve()), source, cid, reference_label_path=lbl, **f)
                   for n, p, lbl, cid, f in facts]
        return [self.scan(i) for i in ids]

    def record_prediction(self, scan_id: int, model_id: int, prediction_path: str | Path | None = None,
                          uncertainty_path: str | Path | None = None, mean_uncertainty: float | None = None,
                          foreground_voxels: int | None = None) -> PredictionInfo:
        """Remember where a model's prediction of a scan is cached (one row per scan and model).

        Parameters
        ----------
        scan_id, model_id : int
            The scan and the model that predicted it.
        prediction_path : str or pathlib.Path, optional
            The prediction's label file.
        uncertainty_path : str or pathlib.Path, optional
            The uncertainty map (.npy).
        mean_uncertainty : float, optional
            Mean normalised entropy (0..1) over the predicted foreground.
        foreground_voxels : int, optional
            Number of foreground voxels predicted.

        Returns
        -------
        PredictionInfo
            The stored row; an earlier row for the same scan and model is replaced.

        Raises
        ------
        sqlite3.IntegrityError
            When the scan or the model does not exist.
        """
        with self.write() as tx:
            pid = tx.upsert_prediction(scan_id, model_id, str(prediction_path) if prediction_path else None,
                                       str(uncertainty_path) if uncertainty_path else None, mean_uncertainty,
                                       foreground_voxels)
        return next(p for p in self.predictions() if p.id == pid)


def scan_folder(store: "Datastore", area: str, scan_id: int) -> Path:
    """A scan's own folder in the workspace, e.g. ``<workspace>/labels/scan000042``.

    Named by the scan's row id, never its name: two scans that share a name can never share a folder,
    so nothing written for one scan is ever seen, moved or cleaned up as another's.
    """
    return store.workspace / area / f"scan{int(scan_id):06d}"


def _content_id_of(path: Path) -> str:
    return content_id(load_scan(path))


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
