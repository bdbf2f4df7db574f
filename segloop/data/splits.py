"""Find labelled cases in an MSD-style folder and make reproducible train/validation splits."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from segloop.errors import SegLoopError
from segloop.io.readers import scan_name


@dataclass(frozen=True)
class Case:
    """One image with (optionally) its reference label map.

    Parameters
    ----------
    name : str
        Case name (the image file name without extension).
    image : str
        Absolute path of the image.
    label : str or None, optional
        Absolute path of the reference label map.
    """

    name: str
    image: str
    label: str | None = None


def msd_cases(folder: str | Path) -> list[Case]:
    """List the labelled cases of a Medical Segmentation Decathlon folder (`dataset.json`, `imagesTr/`, `labelsTr/`).

    Parameters
    ----------
    folder : str or pathlib.Path
        The task folder. With a ``dataset.json`` its ``training`` entries (image/label paths relative
        to the folder) are used; otherwise every ``imagesTr/*.nii*`` with a same-named file in
        ``labelsTr/``.

    Returns
    -------
    list of Case
        Sorted by name, with resolved absolute paths; pairs whose image or label file is missing
        are left out.

    Raises
    ------
    segloop.errors.SegLoopError
        When no labelled case is found.
    json.JSONDecodeError
        When ``dataset.json`` is not valid JSON.
    """
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
    """A seeded k-fold split, recorded in model cards so a validation set can be reproduced.

    Parameters
    ----------
    seed : int
        Seed of the permutation.
    n_folds : int
        Number of folds.
    fold : int
        The fold used for validation, 0..n_folds - 1.
    train, validation : tuple of str
        Case names, each sorted.
    """

    seed: int
    n_folds: int
    fold: int
    train: tuple[str, ...]
    validation: tuple[str, ...]

    def to_dict(self) -> dict:
        """Return the split as a JSON-ready dict, for the model card.

        Returns
        -------
        dict
            ``seed``, ``n_folds``, ``fold``, and ``train`` / ``validation`` as lists of str.
        """
        d = asdict(self)
        d["train"], d["validation"] = list(self.train), list(self.validation)
        return d


def kfold_split(names: list[str], n_folds: int = 5, fold: int = 0, seed: int = 0) -> Split:
    """Split case names into k folds deterministically: fold `fold` is validation, the rest training.

    Names are sorted first, so the split depends only on the set of names and the seed, not on
    the order they were listed in.

    Parameters
    ----------
    names : list of str
        Case names (duplicates are not expected).
    n_folds : int, optional
        Number of folds; with fewer names than folds some folds are empty.
    fold : int, optional
        The validation fold, 0..n_folds - 1.
    seed : int, optional
        Seed of the random permutation (numpy `default_rng`).

    Returns
    -------
    Split

    Raises
    ------
    ValueError
        When `fold` is outside 0..n_folds - 1.

    Examples
    --------
    >>> split = kfold_split(["a", "b", "c", "d", "e"], n_folds=5, fold=0, seed=0)
    >>> split.train, split.validation
    (('a', 'b', 'd', 'e'), ('c',))
    """
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold {fold} is outside 0..{n_folds - 1}")
    order = sorted(names)
    perm = np.random.default_rng(seed).permutation(len(order))
    folds = np.array_split(perm, n_folds)
    val = sorted(order[i] for i in folds[fold])
    train = sorted(set(order) - set(val))
    return Split(seed, n_folds, fold, tuple(train), tuple(val))
