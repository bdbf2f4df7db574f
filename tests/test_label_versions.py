"""Label versions: immutable numbered files, safe under parallel writers and under a killed save."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segloop.config import PROJECT_ROOT, shared_data_dir
from segloop.io.readers import load_label, load_scan
from segloop.store.database import Datastore
from segloop.store.label_versions import (
    approve,
    list_versions,
    load_version,
    save_label_version,
    scan_status,
    scan_statuses,
)

MSD = shared_data_dir() / "msd-hippocampus"
IMAGE = MSD / "imagesTr" / "hippocampus_001.nii.gz"
LABEL = MSD / "labelsTr" / "hippocampus_001.nii.gz"
pytestmark = pytest.mark.usefixtures("msd_dir")  # fails in CI, skips elsewhere, without the data


def _setup(ws: Path):
    store = Datastore(workspace=ws)
    scan = store.add_scan("hippocampus_001", IMAGE, "imported")
    return store, scan, load_scan(IMAGE)


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_versions_roundtrip_on_original_grid_with_dice_and_status(tmp_path):
    store, scan, ref = _setup(tmp_path)
    truth = load_label(LABEL, ref).array
    assert scan_status(store, scan.id) == "new"
    pred = truth.copy()
    pred[pred == 2] = 1  # the "model" calls every posterior voxel anterior
    v1 = save_label_version(store, scan.id, pred, ref, "model", author="model", model_id=None)
    assert scan_status(store, scan.id) == "predicted"
    v2 = save_label_version(store, scan.id, truth, ref, "correction", author="ann", parent_version_id=v1.id)
    assert (v1.version, v2.version) == (1, 2)
    assert Path(v2.path) == tmp_path / "labels" / f"scan{scan.id:06d}" / "v002_correction.nii.gz"
    assert v2.changed_voxels == int((truth == 2).sum()) > 0
    n1, n2 = int((truth == 1).sum()), int((truth == 2).sum())
    assert v2.dice_vs_model["1"] == pytest.approx(2 * n1 / (n1 + n1 + n2))
    assert v2.dice_vs_model["2"] == 0.0
    assert scan_status(store, scan.id) == "corrected"
    # the file lies on the scan's own grid, so other tools overlay it
    saved = nib.load(v2.path)
    assert np.allclose(saved.affine, nib.load(IMAGE).affine)
    assert np.array_equal(np.asarray(saved.dataobj), np.asarray(nib.load(LABEL).dataobj))
    assert np.array_equal(load_version(store, v1.id, ref), pred)
    # approving makes a new immutable version with the same voxels
    sha2 = _sha(v2.path)
    v3 = approve(store, v2.id, author="boss")
    assert (v3.kind, v3.version, v3.parent_version_id, v3.author) == ("approved", 3, v2.id, "boss")
    assert np.array_equal(load_version(store, v3.id, ref), truth)
    assert v3.dice_vs_model == v2.dice_vs_model
    assert scan_statuses(store) == {scan.id: "approved"}
    assert _sha(v2.path) == sha2 and [v.version for v in list_versions(store, scan.id)] == [1, 2, 3]


def _worker(ws: str, worker: int, n: int) -> None:
    store = Datastore(workspace=ws)
    scan = store.scans_named("hippocampus_001")[0]
    ref = load_scan(IMAGE)
    for i in range(n):
        lab = np.zeros(ref.shape, np.uint8)
        lab.flat[: worker * n + i + 1] = 1  # each save is distinguishable by its voxel count
        save_label_version(store, scan.id, lab, ref, "correction", author=f"w{worker}", note=f"{worker}-{i}")


def test_parallel_writers_get_distinct_versions_and_lose_nothing(tmp_path):
    store, scan, ref = _setup(tmp_path)
    workers, per = 4, 10
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), w, per)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * workers
    versions = list_versions(store, scan.id)
    assert sorted(v.version for v in versions) == list(range(1, workers * per + 1))
    assert len({v.path for v in versions}) == workers * per
    for v in versions:
        w, i = map(int, v.note.split("-"))
        assert int(load_version(store, v.id, ref).sum()) == w * per + i + 1
    folder = tmp_path / "labels" / f"scan{scan.id:06d}"
    assert sorted(p.name for p in folder.iterdir()) == sorted(Path(v.path).name for v in versions)


KILLED_SAVE = textwrap.dedent("""
    import contextlib
    import time
    import numpy as np
    from segloop.store.database import Datastore, Tx
    from segloop.store.label_versions import save_label_version
    from segloop.io.readers import load_scan

    # hang at the end of the save's write transaction, just before its COMMIT: the version file is
    # linked into place and every row is written, nothing is committed (the test kills us here)
    inserted, insert, write = [], Tx.insert_label_version, Datastore.write

    def insert_and_note(tx, *args, **kwargs):
        inserted.append(args[3])  # the version file's path
        return insert(tx, *args, **kwargs)

    @contextlib.contextmanager
    def write_hanging_before_commit(self):
        with write(self) as tx:
            yield tx
            if inserted:
                print("paused before commit:", inserted[0], flush=True)
                time.sleep(60)

    Tx.insert_label_version = insert_and_note
    Datastore.write = write_hanging_before_commit
    store = Datastore(workspace={ws!r})
    ref = load_scan({image!r})
    scan = store.scans_named("hippocampus_001")[0]
    save_label_version(store, scan.id, np.ones(ref.shape, np.uint8), ref, "correction", author="doomed")
""")


def test_save_killed_before_commit_leaves_previous_versions_intact(tmp_path):
    store, scan, ref = _setup(tmp_path)
    truth = load_label(LABEL, ref).array
    v1 = save_label_version(store, scan.id, truth, ref, "model")
    v2 = save_label_version(store, scan.id, (truth > 0).astype(np.uint8), ref, "correction", parent_version_id=v1.id)
    hashes = {v.id: _sha(v.path) for v in (v1, v2)}
    # the child's save hangs inside its write transaction, just before the commit (see KILLED_SAVE)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SAVE.format(ws=str(tmp_path), image=str(IMAGE))],
                            env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "paused before commit" in line, line
        assert Path(line.split(":", 1)[1].strip()).is_file()  # the killed save's file is in place
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # the database never saw the killed save; older versions are untouched and load
    assert [v.version for v in list_versions(store, scan.id)] == [1, 2]
    assert {v.id: _sha(v.path) for v in list_versions(store, scan.id)} == hashes
    assert np.array_equal(load_version(store, v1.id, ref), truth)
    # the next save gets the next number; the unregistered file of the killed save is moved aside
    v3 = save_label_version(store, scan.id, truth, ref, "correction", author="ann", parent_version_id=v2.id)
    assert v3.version == 3 and v3.author == "ann"
    assert np.array_equal(load_version(store, v3.id, ref), truth)
    folder = tmp_path / "labels" / f"scan{scan.id:06d}"
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == [
        "v001_model.nii.gz", "v002_correction.nii.gz", "v003_correction.nii.gz"]
    assert len(list((folder / "orphaned").iterdir())) == 1


def test_label_on_another_grid_is_refused(tmp_path):
    store, scan, ref = _setup(tmp_path)
    with pytest.raises(Exception, match="does not match"):
        save_label_version(store, scan.id, np.zeros((3, 3, 3), np.uint8), ref, "correction")
    assert list_versions(store, scan.id) == []
