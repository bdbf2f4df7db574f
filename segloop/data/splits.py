"""Find labelled cases in an MSD-style folder and make reproducible train/validation splits."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from segloop.errors import SegLoopError
from segloop.io.atomic import atomic_write_json
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


def kfold_splits(names: list[str], n_folds: int = 5, seed: int = 0) -> list[Split]:
    """All folds of a seeded k-fold split, for cross-validation: every case in exactly one validation fold.

    Fold ``k`` is exactly ``kfold_split(names, n_folds, k, seed)``, so fold 0 of a 5-fold split with seed
    0 is the split the shipped model was trained on.

    Parameters
    ----------
    names : list of str
        Case names; the order they are listed in does not matter.
    n_folds : int, optional
        Number of folds, at least 2 and at most the number of names (no fold may be empty: a fold
        without cases has no score).
    seed : int, optional
        Seed of the random permutation.

    Returns
    -------
    list of Split
        ``n_folds`` splits, fold 0 first; their validation sets are disjoint and together hold every name.

    Raises
    ------
    ValueError
        When `names` holds duplicates, `n_folds` is below 2, or there are fewer names than folds.

    Examples
    --------
    >>> folds = kfold_splits(["a", "b", "c", "d", "e"], n_folds=2, seed=0)
    >>> [f.validation for f in folds]
    [('c', 'd', 'e'), ('a', 'b')]
    """
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"case names must be unique; repeated: {', '.join(dupes[:5])}")
    if n_folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {n_folds}")
    if len(names) < n_folds:
        raise ValueError(f"{len(names)} cases cannot fill {n_folds} folds")
    return [kfold_split(names, n_folds, k, seed) for k in range(n_folds)]


def save_kfold_splits(path: str | Path, splits: list[Split], data: str | Path | None = None) -> None:
    """Write the folds of a cross-validation as JSON with their case names, atomically.

    Parameters
    ----------
    path : str or pathlib.Path
        Target file (e.g. ``<cv>/splits.json``); replaced if it exists, missing folders created.
    splits : list of Split
        The folds, as `kfold_splits` returns them.
    data : str or pathlib.Path, optional
        The data folder the names refer to, recorded as given (resolved) so the folds can be found again.

    Returns
    -------
    None

    Notes
    -----
    Layout: ``{"seed", "n_folds", "data", "folds": [{"fold", "train": [...], "validation": [...]}]}``,
    read back by `load_kfold_splits`.
    """
    atomic_write_json(path, {
        "seed": splits[0].seed, "n_folds": splits[0].n_folds,
        "data": str(Path(data).resolve()) if data else None,
        "folds": [{"fold": s.fold, "train": list(s.train), "validation": list(s.validation)} for s in splits]})


def load_kfold_splits(path: str | Path) -> list[Split]:
    """Read the folds written by `save_kfold_splits`.

    Parameters
    ----------
    path : str or pathlib.Path
        The JSON file.

    Returns
    -------
    list of Split
        The folds in file order, names sorted as written.

    Raises
    ------
    OSError
        When the file cannot be read.
    KeyError, json.JSONDecodeError
        When it is not a file of that layout.
    """
    d = json.loads(Path(path).read_text())
    return [Split(int(d["seed"]), int(d["n_folds"]), int(f["fold"]), tuple(f["train"]), tuple(f["validation"]))
            for f in d["folds"]]
