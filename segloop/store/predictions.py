"""A model's output on a stored scan: registering the scan, saving the prediction and its uncertainty.

`record_model_output` stores a model's prediction of a scan in the datastore: a 'model' label version,
the uncertainty map as .npy (float16) and the prediction row the review queue ranks by.
"""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

import nibabel as nib
import numpy as np

from segloop.io.atomic import atomic_write_bytes
from segloop.io.volume import Volume
from segloop.store.database import Datastore, LabelVersion, PredictionInfo, ScanRecord
from segloop.store.label_versions import save_label_version
from segloop.store.vocabulary import LabelKind


def ensure_scan(store: Datastore, name: str, volume: Volume, source: str,
                reference_label_path: str | None = None) -> ScanRecord:
    """The datastore record of a scan, registering it by path on first use.

    A scan without a readable file on disk (an upload) is written once into
    `<workspace>/scans/` as NIfTI so its label versions always have their image.
    """
    found = store.scan_by_name(name)
    if found is not None:
        return found
    path = Path(volume.source_path) if volume.source_path else None
    src = "datadir" if source in ("data folder", "demo") else "uploaded"
    if path is None or not path.exists():
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "scan"
        path = store.workspace / "scans" / f"{safe}.nii.gz"
        if not path.exists():
            img = nib.Nifti1Image(volume.to_source(volume.array).astype(np.float32), volume.source_affine)
            img.set_qform(volume.source_affine, code=1)
            img.set_sform(volume.source_affine, code=1)
            atomic_write_bytes(path, gzip.compress(img.to_bytes(), compresslevel=6))
        src = "uploaded"
    return store.add_scan(name, path, source=src, reference_label_path=reference_label_path)


def predictions_dir(store: Datastore, scan_name: str) -> Path:
    """Folder of a scan's cached model outputs (uncertainty maps)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", scan_name).lstrip(".") or "scan"
    return store.workspace / "predictions" / safe


def record_model_output(store: Datastore, scan: ScanRecord, reference: Volume, labels: np.ndarray,
                        uncertainty: np.ndarray, model_id: int | None, note: str = ""
                        ) -> tuple[LabelVersion, PredictionInfo | None]:
    """Save a model's output: a 'model' label version, the uncertainty map (.npy) and the prediction row.

    The prediction row needs a registered model; without one (model_id None) only the version is saved.
    """
    version = save_label_version(store, scan.id, labels, reference, kind=LabelKind.MODEL, author="model",
                                 model_id=model_id, note=note)
    if model_id is None:
        return version, None
    folder = predictions_dir(store, scan.name)
    unc_path = folder / f"model{model_id}_uncertainty.npy"
    buf = io.BytesIO()
    np.save(buf, np.asarray(uncertainty, np.float16))
    atomic_write_bytes(unc_path, buf.getvalue())
    fg = labels > 0
    mean_unc = float(uncertainty[fg].mean()) if fg.any() else 0.0
    info = store.record_prediction(scan.id, model_id, prediction_path=version.path, uncertainty_path=unc_path,
                                   mean_uncertainty=mean_unc, foreground_voxels=int(fg.sum()))
    return version, info
