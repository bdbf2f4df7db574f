"""A model's output on a stored scan: registering the scan, saving the prediction and its uncertainty.

`record_model_output` stores a model's prediction of a scan in the datastore: a 'model' label version,
the uncertainty map as .npy (float16) and the prediction row the review queue ranks by.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import nibabel as nib
import numpy as np

from segloop.io.atomic import atomic_write_bytes
from segloop.io.volume import Volume, content_id
from segloop.store.database import Datastore, LabelVersion, PredictionInfo, ScanRecord, scan_folder
from segloop.store.label_versions import save_label_version
from segloop.store.vocabulary import LabelKind, ScanSource


def ensure_scan(store: Datastore, name: str, volume: Volume, source: str,
                reference_label_path: str | None = None) -> ScanRecord:
    """Return the datastore record of a scan, found by its content, registering it on first use.

    The scan is identified by `content_id` (voxels plus geometry), never by `name`: an upload that
    happens to share a name with another scan is a different scan, and the same image opened from the
    data folder and uploaded is the same scan, with the same label versions.

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    name : str
        Display name for a newly registered scan.
    volume : Volume
        The loaded scan; its ``source_path`` is registered when that file exists.
    source : str
        Where the app got the scan: "data folder" or "demo" register it as "datadir", anything else
        as "uploaded".
    reference_label_path : str, optional
        Ground-truth label file to record with the scan.

    Returns
    -------
    ScanRecord
        The existing or newly registered scan.

    Notes
    -----
    Side effects on first use: one ``scans`` row (or, for a scan registered by an older SegLoop with
    the same name and path, its content id filled in); and when ``volume.source_path`` is not an
    existing file, ``<workspace>/scans/<content id>.nii.gz`` is written atomically unless it already
    exists: the voxels as float32 in the file's own voxel order with ``source_affine`` as qform and
    sform (code 1), registered as "uploaded".
    """
    cid = content_id(volume)
    found = store.scan_by_content(cid)
    if found is not None:
        return found
    path = Path(volume.source_path) if volume.source_path else None
    if path is not None and path.exists():
        legacy = [s for s in store.scans_named(name) if s.sha256 is None
                  and Path(s.image_path).resolve() == path.resolve()]
        if legacy:  # registered before scans had content ids: same name AND same file
            with store.write() as tx:
                tx.adopt_legacy_scan(legacy[0].id, cid)
            return store.scan(legacy[0].id)
    src = ScanSource.DATADIR if source in ("data folder", "demo") else ScanSource.UPLOADED
    if path is None or not path.exists():
        path = store.workspace / "scans" / f"{cid}.nii.gz"
        if not path.exists():
            img = nib.Nifti1Image(volume.to_source(volume.array).astype(np.float32), volume.source_affine)
            img.set_qform(volume.source_affine, code=1)
            img.set_sform(volume.source_affine, code=1)
            atomic_write_bytes(path, gzip.compress(img.to_bytes(), compresslevel=6))
        src = ScanSource.UPLOADED
    return store.add_scan(name, path, source=src, reference_label_path=reference_label_path, content_id=cid)


def record_model_output(store: Datastore, scan: ScanRecord, reference: Volume, labels: np.ndarray,
                        uncertainty: np.ndarray, model_id: int | None, note: str = ""
                        ) -> tuple[LabelVersion, PredictionInfo | None]:
    """Save a model's output: a 'model' label version, the uncertainty map (.npy) and the prediction row.

    The prediction row needs a registered model; without one (model_id None) only the version is saved.

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    scan : ScanRecord
        The scan that was predicted.
    reference : Volume
        The loaded scan: the grid of `labels` and `uncertainty`, and the geometry the label file is saved with.
    labels : np.ndarray of uint8, shape (X, Y, Z), RAS voxel order
        The predicted label map on `reference`'s grid.
    uncertainty : np.ndarray of float, shape (X, Y, Z), RAS voxel order
        Normalised entropy per voxel, 0..1 (`segloop.model.inference.Prediction.uncertainty`).
    model_id : int or None
        Row id of the registered model that made it.
    note : str, optional
        Free text stored with the label version.

    Returns
    -------
    version : LabelVersion
        The new 'model' version (author "model"), saved by `save_label_version`.
    info : PredictionInfo or None
        The scan's prediction row for `model_id` (mean uncertainty over ``labels > 0``, 0.0 without
        foreground, and the foreground voxel count); None when `model_id` is None.

    Raises
    ------
    SegLoopError
        When the scan is not in the database or `labels` does not have the reference's shape.

    Notes
    -----
    Side effects: the label file and ``label_versions`` row (see `save_label_version`);
    ``<predictions_dir>/model<model_id>_uncertainty.npy`` (float16, replaced atomically); and one
    ``predictions`` row inserted or replaced.
    """
    version = save_label_version(store, scan.id, labels, reference, kind=LabelKind.MODEL, author="model",
                                 model_id=model_id, note=note)
    if model_id is None:
        return version, None
    folder = scan_folder(store, "predictions", scan.id)
    unc_path = folder / f"model{model_id}_uncertainty.npy"
    buf = io.BytesIO()
    np.save(buf, np.asarray(uncertainty, np.float16))
    atomic_write_bytes(unc_path, buf.getvalue())
    fg = labels > 0
    mean_unc = float(uncertainty[fg].mean()) if fg.any() else 0.0
    info = store.record_prediction(scan.id, model_id, prediction_path=version.path, uncertainty_path=unc_path,
                                   mean_uncertainty=mean_unc, foreground_voxels=int(fg.sum()))
    return version, info
