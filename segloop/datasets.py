"""Find labelled cases in an MSD-style folder and make reproducible train/validation splits."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from segloop.errors import SegLoopError
from segloop.loading import scan_name


@dataclass(frozen=True)
class Case:
    """One image with (optionally) its reference label map."""

    name: str
    image: str
    label: str | None = None


def msd_cases(folder: str | Path) -> list[Case]:
    """Labelled cases of a Medical Segmentation Decathlon folder (`dataset.json`, `imagesTr/`, `labelsTr/`)."""
    folder = Path(folder)
    manifest = folder / "dataset.json"
    if manifest.is_file():
        entries = json.loads(manifest.read_text()).get("training", [])
        pairs = [(folder / e["image"], folder / e["label"]) for e in entries]
    else:
        pairs = [(p, folder / "labelsTr" / p.name) for p in sorted((folder / "imagesTr").glob("*.nii*"))]
    cases = [Case(scan_name(img), str(img.resolve()), str(lbl.resolve())) for img, lbl in pairs
             if img.is_file() and lbl.is_file()]
    if not cases:
        raise SegLoopError(f"{folder}: no labelled cases found (expected imagesTr/ and labelsTr/)")
    return sorted(cases, key=lambda c: c.name)


@dataclass(frozen=True)
class Split:
    """A seeded k-fold split, recorded in model cards so a validation set can be reproduced."""

    seed: int
    n_folds: int
    fold: int
    train: tuple[str, ...]
    validation: tuple[str, ...]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["train"], d["validation"] = list(self.train), list(self.validation)
        return d


def kfold_split(names: list[str], n_folds: int = 5, fold: int = 0, seed: int = 0) -> Split:
    """Deterministic k-fold split of case names: fold `fold` is validation, the rest training."""
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold {fold} is outside 0..{n_folds - 1}")
    order = sorted(names)
    perm = np.random.default_rng(seed).permutation(len(order))
    folds = np.array_split(perm, n_folds)
    val = sorted(order[i] for i in folds[fold])
    train = sorted(set(order) - set(val))
    return Split(seed, n_folds, fold, tuple(train), tuple(val))
