"""Immutable, numbered label versions per scan: save, list, load, approve; scan status.

A save never overwrites anything. The label file is first written completely to a temporary file;
then, holding the database's write lock (BEGIN IMMEDIATE), the next version number is allocated,
the temporary file is hard-linked to `<workspace>/labels/<scan>/v<NNN>_<kind>.nii.gz` (the link
fails rather than replace an existing file) and the row is committed. Two sessions saving at
once get distinct versions. A process killed mid-save leaves the previous versions and rows
untouched: at worst a finished file without a row, which the next save moves to `orphaned/`.

Approval creates a new 'approved' version (a byte copy of the approved file, parent = that
version) rather than flipping a flag, so the history shows who approved what and when, and an
approved label can never change afterwards.

Saving a person's version takes the annotator role and approving the reviewer role
(`segloop.store.identity.authorize`, checked here whatever page or command asks); each records the
saver's sign-in subject and e-mail with the version and appends an entry to the audit trail, in the
version's own transaction. Without an identity the call acts as the local identity, as before sign-in.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np

from segloop.errors import SegLoopError
from segloop.io.readers import load_label
from segloop.io.volume import Volume
from segloop.io.writers import save_label
from segloop.model.metrics import dice_per_label
from segloop.io.atomic import fsync_dir
from segloop.store.database import Datastore, LabelVersion, Tx, scan_folder
from segloop.store.identity import Action, Identity, acting, audit, authorize
from segloop.store.processes import pid_alive
from segloop.store.vocabulary import STATUS_BY_KIND, AuditAction, CaseStatus, LabelKind

_VERSION_FILE = re.compile(r"^v(\d+)_[a-z]+\.nii\.gz$")
_TMP_FILE = re.compile(r"tmp-(\d+)-")



def labels_dir(store: Datastore, scan_id: int) -> Path:
    """Return the folder of a scan's label versions, ``<workspace>/labels/scan<id>`` (not created here)."""
    return scan_folder(store, "labels", scan_id)


def _clean_folder(tx: Tx, scan_id: int, folder: Path) -> None:
    """With the write lock held: move unregistered version files aside, delete temp files of dead processes."""
    if not folder.is_dir():
        return
    registered = {Path(p).name for p in tx.label_paths(scan_id)}
    for f in folder.iterdir():
        if _VERSION_FILE.match(f.name) and f.name not in registered:
            # left by a save killed between link and commit: nobody else can be mid-commit (we hold the lock)
            dest = folder / "orphaned"
            dest.mkdir(exist_ok=True)
            os.replace(f, dest / f"{f.name}.{int(time.time())}")
        elif f.name.startswith(".") and (m := _TMP_FILE.search(f.name)) and not pid_alive(int(m.group(1))):
            f.unlink(missing_ok=True)


def _nearest_model_version(store: Datastore, version_id: int | None) -> LabelVersion | None:
    """Walk the parent chain to the model prediction a label came from."""
    seen = set()
    while version_id is not None and version_id not in seen:
        seen.add(version_id)
        v = store.label_version(version_id)
        if v.kind == LabelKind.MODEL:
            return v
        version_id = v.parent_version_id
    return None


def _compare(label: np.ndarray, model_arr: np.ndarray | None, parent_arr: np.ndarray | None
             ) -> tuple[dict[str, float] | None, int | None]:
    dice = None
    if model_arr is not None:
        values = sorted(int(v) for v in set(np.unique(label).tolist()) | set(np.unique(model_arr).tolist()) if v != 0)
        dice = {str(k): round(float(d), 6) for k, d in dice_per_label(label, model_arr, values).items()}
    changed = int(np.count_nonzero(label != parent_arr)) if parent_arr is not None else None
    return dice, changed


def _commit_file(store: Datastore, scan_id: int, kind: str, tmp: Path, parent_version_id: int | None,
                 model_id: int | None, author: str, note: str, dice: dict | None, changed: int | None,
                 actor: tuple[Identity, str, str] | None = None) -> LabelVersion:
    """Allocate the version, link the finished temp file into place and commit the row (one transaction).

    `actor` (identity, role, audit action): whose version it is, recorded with it and in the audit trail.
    """
    folder = tmp.parent
    final: Path | None = None
    try:
        with store.write() as tx:
            _clean_folder(tx, scan_id, folder)
            version = tx.max_label_version(scan_id) + 1
            final = folder / f"v{version:03d}_{kind}.nii.gz"
            os.link(tmp, final)  # raises FileExistsError rather than overwrite
            fsync_dir(folder)
            who = actor[0] if actor else None
            vid = tx.insert_label_version(scan_id, version, kind, str(final), parent_version_id, model_id, author,
                                          note, dice, changed, who.subject if who else "", who.email if who else "")
            if actor is not None:
                audit(tx, who, actor[1], actor[2], f"scan {scan_id} ({tx.scan(scan_id).name}) v{version}",
                      scan_id=scan_id, version_id=vid, version=version, kind=str(kind),
                      parent_version_id=parent_version_id)
    except BaseException:
        if final is not None and final.exists() and os.path.samefile(final, tmp):
            final.unlink()
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return store.label_version(vid)


def _tmp_path(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}.nii.gz"


def save_label_version(store: Datastore, scan_id: int, label_ras: np.ndarray, reference: Volume, kind: str,
                       author: str = "", parent_version_id: int | None = None, model_id: int | None = None,
                       note: str = "", identity: Identity | None = None) -> LabelVersion:
    """Save a label map (RAS order, on `reference`'s grid) as the scan's next immutable version.

    Records Dice per label against the model prediction it descends from and the number of
    voxels changed relative to the parent version. `model_id` defaults to the parent's.

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    scan_id : int
        Row id of the scan.
    label_ras : np.ndarray of uint8, shape (X, Y, Z), RAS voxel order
        The label map on `reference`'s grid (whole values 0..65535; saved as uint16 above 255).
    reference : Volume
        The loaded scan; the file is written on its original grid (`segloop.io.writers.save_label`).
    kind : str
        A `LabelKind` value.
    author : str, optional
        Who saved it, in local mode; signed in, the author is `identity` (`segloop.store.identity.acting`).
    parent_version_id : int, optional
        Row id of the version this one was edited from (same scan).
    model_id : int, optional
        Model the labels come from; default: the parent's.
    note : str, optional
        Free text.
    identity : Identity, optional
        Who saves it; None: the local identity. Any kind but 'model' (a model's own output, recorded
        without a person) takes the annotator role and is recorded in the audit trail.

    Returns
    -------
    LabelVersion
        The committed version, numbered one above the scan's current highest.

    Raises
    ------
    PermissionDenied
        When `identity`'s role may not save label versions (nothing is written).
    ValueError
        When `kind` is not a `LabelKind` value.
    SegLoopError
        When the shape differs from `reference`'s, the scan or the parent version is unknown, or the
        parent belongs to another scan.
    segloop.errors.ScanError
        When the parent's (or its model ancestor's) label file cannot be read on `reference`'s grid.

    Notes
    -----
    Side effects: ``<labels_dir>/v<NNN>_<kind>.nii.gz`` is written (via a hidden temporary file that
    is always removed) and one ``label_versions`` row inserted, in one write transaction. Under the
    same lock, version files without a row are moved to ``orphaned/`` and temporary files of dead
    processes are deleted (see the module docstring).
    """
    if kind not in LabelKind.__members__.values():
        raise ValueError(f"unknown label version kind {kind!r}")
    actor = None
    if kind != LabelKind.MODEL:
        identity, author = acting(identity, author)
        actor = (identity, authorize(store, identity, Action.SAVE), AuditAction.SAVE)
    label_ras = np.asarray(label_ras)
    if label_ras.shape != reference.shape:
        raise SegLoopError(f"label shape {label_ras.shape} does not match the scan shape {reference.shape}")
    scan = store.scan(scan_id)
    parent = store.label_version(parent_version_id) if parent_version_id is not None else None
    if parent is not None and parent.scan_id != scan_id:
        raise SegLoopError(f"label version #{parent.id} belongs to another scan")
    if model_id is None and parent is not None:
        model_id = parent.model_id
    parent_arr = load_version(store, parent.id, reference) if parent else None
    model_v = parent if (parent and parent.kind == LabelKind.MODEL) else _nearest_model_version(store, parent_version_id)
    model_arr = parent_arr if model_v is parent else (load_version(store, model_v.id, reference) if model_v else None)
    dice, changed = _compare(label_ras, model_arr, parent_arr)
    tmp = _tmp_path(labels_dir(store, scan.id))
    try:
        save_label(label_ras, reference, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _commit_file(store, scan_id, kind, tmp, parent_version_id, model_id, author, note, dice, changed, actor)


def list_versions(store: Datastore, scan_id: int) -> list[LabelVersion]:
    """List all label versions of a scan, oldest first.

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    scan_id : int
        Row id of the scan.

    Returns
    -------
    list of LabelVersion
        Version 1 first; empty for a scan without versions (or an unknown id).
    """
    return store.label_versions(scan_id)


def load_version(store: Datastore, version_id: int, reference: Volume) -> np.ndarray:
    """Load a saved version's label map in RAS order on `reference`'s grid.

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    version_id : int
        Row id of the version.
    reference : Volume
        The scan the version labels; the file must lie on its grid.

    Returns
    -------
    np.ndarray of uint8, shape (X, Y, Z), RAS voxel order
        The label map (uint16 when a value is above 255), shape ``reference.shape``.

    Raises
    ------
    SegLoopError
        When the version is not in the database.
    segloop.errors.ScanError
        When its file cannot be read or is not on `reference`'s grid.
    """
    v = store.label_version(version_id)
    return load_label(v.path, reference=reference).array


def approve(store: Datastore, version_id: int, author: str = "", note: str = "",
            identity: Identity | None = None) -> LabelVersion:
    """Approve a version: a new 'approved' version with the same voxels, pointing to it.

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    version_id : int
        Row id of the version to approve.
    author : str, optional
        The reviewer, in local mode; signed in, the author is `identity`.
    note : str, optional
        Free text.
    identity : Identity, optional
        The reviewer; None: the local identity. Takes the reviewer role.

    Returns
    -------
    LabelVersion
        The new 'approved' version: parent `version_id`, the same model id, ``changed_voxels`` 0 and
        Dice against the nearest model prediction. An already approved version is returned as is,
        with nothing written.

    Raises
    ------
    PermissionDenied
        When `identity`'s role may not approve (nothing is written).
    SegLoopError
        When the version is not in the database.

    Notes
    -----
    Side effects: a byte copy of the approved file, ``<labels_dir>/v<NNN>_approved.nii.gz``, one
    ``label_versions`` row and one audit trail entry, committed as in `save_label_version`.
    """
    identity, author = acting(identity, author)
    role = authorize(store, identity, Action.APPROVE)
    v = store.label_version(version_id)
    if v.kind == LabelKind.APPROVED:
        return v
    scan = store.scan(v.scan_id)
    src = np.asanyarray(nib.load(v.path).dataobj)
    model_v = v if v.kind == LabelKind.MODEL else _nearest_model_version(store, v.id)
    dice, _ = _compare(src, np.asanyarray(nib.load(model_v.path).dataobj) if model_v else None, None)
    tmp = _tmp_path(labels_dir(store, scan.id))
    try:
        shutil.copyfile(v.path, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _commit_file(store, v.scan_id, LabelKind.APPROVED, tmp, v.id, v.model_id, author, note, dice, 0,
                        (identity, role, AuditAction.APPROVE))


def status_from_versions(versions: list[LabelVersion], has_prediction: bool = False) -> str:
    """Return 'new', 'predicted', 'corrected' or 'approved', from a scan's newest version.

    A 'reference' label (imported ground truth) counts as 'corrected': human-made, not yet approved here.

    Parameters
    ----------
    versions : list of LabelVersion
        Some or all versions of one scan, any order; the highest ``version`` number decides.
    has_prediction : bool, optional
        Whether a prediction row exists; only used when `versions` is empty.

    Returns
    -------
    CaseStatus
        A `CaseStatus` member (equal to its plain string).

    Examples
    --------
    >>> status_from_versions([]) == "new", status_from_versions([], has_prediction=True) == "predicted"
    (True, True)
    """
    if not versions:
        return CaseStatus.PREDICTED if has_prediction else CaseStatus.NEW
    return STATUS_BY_KIND[LabelKind(max(versions, key=lambda v: v.version).kind)]


def scan_status(store: Datastore, scan_id: int) -> str:
    """Return the derived status of one scan (see `status_from_versions`).

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    scan_id : int
        Row id of the scan.

    Returns
    -------
    CaseStatus
        From its newest label version; "predicted" or "new" without one, by whether any model's
        prediction row exists for it.
    """
    has_pred = any(p.scan_id == scan_id for p in store.predictions())
    return status_from_versions(store.label_versions(scan_id), has_pred)


def scan_statuses(store: Datastore) -> dict[int, str]:
    """Return the derived status of every scan, keyed by scan id (three queries, whatever the number of scans).

    Parameters
    ----------
    store : Datastore
        The workspace's database.

    Returns
    -------
    dict of int to CaseStatus
        Scan id -> status, for every registered scan.
    """
    latest = store.latest_versions()
    predicted = {p.scan_id for p in store.predictions()}
    return {s.id: status_from_versions([latest[s.id]] if s.id in latest else [], s.id in predicted)
            for s in store.scans()}
