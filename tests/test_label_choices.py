"""The labels a page opens a case on: latest approved, else correction, else model output; reference last."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from segloop.io.readers import load_scan
from segloop.store.database import Datastore, LabelVersion
from segloop.store.label_choices import (
    REFERENCE,
    REFERENCE_TITLE,
    default_choice,
    default_label_version,
    label_choices,
    version_key,
)
from segloop.store.label_versions import approve, list_versions, save_label_version


def _v(n: int, kind: str, author: str = "", vid: int | None = None) -> LabelVersion:
    return LabelVersion(vid or 100 + n, 1, n, kind, f"/ws/labels/scan1/v{n:03d}_{kind}.nii.gz", None, None, author,
                        float(n), "", None, None)


@pytest.mark.parametrize(("kinds", "expected"), [
    (["model"], 1),
    (["model", "model"], 2),
    (["model", "correction", "model"], 2),  # a later model output does not hide a person's correction
    (["model", "correction", "correction"], 3),
    (["correction", "approved", "correction", "model"], 2),  # approved wins over newer, unreviewed work
    (["approved", "correction", "approved"], 3),
    (["model", "reference"], 2),  # imported ground truth ranks with corrections
    (["reference", "correction"], 2),
])
def test_default_follows_approved_then_correction_then_model(kinds, expected):
    versions = [_v(i + 1, k) for i, k in enumerate(kinds)]
    assert default_label_version(versions).version == expected
    assert default_label_version(list(reversed(versions))).version == expected  # order does not matter
    assert default_choice(versions, has_reference=True) == version_key(100 + expected)


def test_without_versions_the_reference_labels_are_the_default_and_otherwise_nothing():
    assert default_label_version([]) is None
    assert default_choice([], has_reference=True) == REFERENCE
    assert default_choice([], has_reference=False) is None
    assert label_choices([], has_reference=False) == []
    only = label_choices([], has_reference=True)
    assert [(c.key, c.title, c.version) for c in only] == [(REFERENCE, REFERENCE_TITLE + " (default)", None)]


def test_choices_newest_first_then_the_reference_with_the_default_marked():
    versions = [_v(1, "model", "model"), _v(2, "correction", "Ann"), _v(3, "model", "model"), _v(4, "approved", "Rev")]
    choices = label_choices(versions, has_reference=True)
    assert [c.title for c in choices] == ["v4 · approved · Rev (default)", "v3 · model output",
                                          "v2 · correction · Ann", "v1 · model output", REFERENCE_TITLE]
    assert [c.key for c in choices] == ["version:104", "version:103", "version:102", "version:101", "reference"]
    assert choices[0].version is versions[3] and choices[-1].version is None
    assert sum(c.title.endswith("(default)") for c in choices) == 1
    # never a file path in what the user reads
    assert not any("/" in c.title or ".nii" in c.title for c in choices)
    assert [c.title for c in label_choices(versions[:1])] == ["v1 · model output (default)"]


def test_default_of_versions_saved_in_a_workspace(tmp_path):
    store = Datastore(workspace=tmp_path / "ws")
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), np.eye(4)), path)
    vol = load_scan(path)
    scan = store.add_scan("scan", path)
    labels = np.zeros(vol.shape, np.uint8)
    model = save_label_version(store, scan.id, labels, vol, kind="model", author="model")
    labels[1, 1, 1] = 1
    corr = save_label_version(store, scan.id, labels, vol, kind="correction", author="Ann", parent_version_id=model.id)
    save_label_version(store, scan.id, labels, vol, kind="model", author="model")
    assert default_label_version(list_versions(store, scan.id)).id == corr.id
    approved = approve(store, corr.id, author="Rev")
    labels[2, 2, 2] = 2
    save_label_version(store, scan.id, labels, vol, kind="correction", author="Ann", parent_version_id=approved.id)
    assert default_label_version(list_versions(store, scan.id)).id == approved.id
