"""List the cases of a data folder (SEGLOOP_DATA_DIR) and resolve deep links `?case=<name>` safely.

Two layouts are understood:
- Medical Segmentation Decathlon: `dataset.json`, `imagesTr/` (+ `labelsTr/` with the same file
  names), optionally `imagesTs/` (unlabelled).
- A plain folder of scans: NIfTI, NRRD, MHA/MHD files and folders holding a DICOM series, at any
  depth. A label map sits beside its scan as `foo_label.nii.gz` / `foo_seg.nii.gz` (also `_labels`,
  `_mask`, `_segmentation`) or in a `labels/` folder as `labels/foo.nii.gz`.

Listing only looks at file names and DICOM markers; no voxel data is read. Only files inside the
data folder are ever returned: symbolic links that lead outside it are skipped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from segloop.errors import SegLoopError
from segloop.io.dicom import is_dicom_file
from segloop.io.readers import NIFTI_SUFFIXES, scan_name

SCAN_FILE_SUFFIXES = NIFTI_SUFFIXES + (".nrrd", ".nhdr", ".mha", ".mhd")
LABEL_SUFFIXES = ("_label", "_labels", "_seg", "_segmentation", "_mask")
LABEL_DIRS = ("labels", "labelsTr", "labelsTs")
#: Guards against pointing the data folder at something huge.
MAX_DEPTH = 6
MAX_CASES = 100000


@dataclass(frozen=True)
class SourceCase:
    """One scan the app can open: a file or DICOM folder, with its label map if one exists.

    Parameters
    ----------
    name : str
        Unique within the data folder, POSIX style: the scan's path relative to the folder without
        extension (e.g. "sub-01/t1"; just the file name for MSD cases); used in deep links ``?case=<name>``.
    image_path : str
        Absolute path of the scan file, or of the folder holding a DICOM series.
    label_path : str or None
        Absolute path of its label map, or None.
    kind : {"nifti", "itk", "dicom"}
        NIfTI file, NRRD/MHA/MHD file (read with SimpleITK), or DICOM series folder.
    description : str, optional
        Free text shown with the case (used for demo scans).
    """

    name: str  # unique within the folder; used in deep links (?case=name)
    image_path: str
    label_path: str | None
    kind: str  # "nifti", "itk" (NRRD/MHA/MHD) or "dicom" (a folder holding a series)
    description: str = ""


def _kind(path: Path) -> str:
    return "nifti" if path.name.lower().endswith(NIFTI_SUFFIXES) else "itk"


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
        return True
    except (ValueError, OSError):
        return False


def _is_scan_file(p: Path) -> bool:
    return p.name.lower().endswith(SCAN_FILE_SUFFIXES) and not p.name.startswith(".")


def _msd_cases(root: Path) -> list[SourceCase]:
    cases: list[SourceCase] = []
    for images, labels in (("imagesTr", "labelsTr"), ("imagesTs", "labelsTs")):
        folder = root / images
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if not _is_scan_file(p) or not p.is_file() or not _inside(p, root):
                continue
            lbl = root / labels / p.name
            label = str(lbl) if lbl.is_file() and _inside(lbl, root) else None
            cases.append(SourceCase(scan_name(p), str(p), label, _kind(p)))
    return cases


def _label_stem(stem: str) -> str | None:
    for suf in LABEL_SUFFIXES:
        if stem.lower().endswith(suf) and len(stem) > len(suf):
            return stem[: -len(suf)]
    return None


def _plain_cases(root: Path) -> list[SourceCase]:
    found: list[tuple[str, Path, str]] = []  # (name, path, kind)
    labels: dict[str, Path | None] = {}  # key: relative name of the scan it belongs to
    for dirpath, dirs, files in os.walk(root):  # does not follow symlinked folders
        here = Path(dirpath)
        rel_dir = here.relative_to(root)
        depth = len(rel_dir.parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < MAX_DEPTH else []
        visible = sorted(f for f in files if not f.startswith("."))
        in_label_dir = rel_dir.parts and rel_dir.parts[-1] in LABEL_DIRS
        if rel_dir.parts and ((here / "dataset.json").is_file() or (here / "imagesTr").is_dir()):
            for c in _msd_cases(here):  # a nested MSD folder keeps its image/label pairs
                name = (rel_dir / c.name).as_posix()
                labels[name] = Path(c.label_path) if c.label_path else None  # type: ignore[assignment]
                found.append((name, Path(c.image_path), c.kind))
            dirs[:] = []
            continue
        if any(f.lower().endswith(".dcm") for f in visible) or any(
            is_dicom_file(here / f) for f in visible[:3] if "." not in f
        ):
            found.append((rel_dir.as_posix() if rel_dir.parts else root.name, here, "dicom"))
            dirs[:] = []
            continue
        for f in visible:
            p = here / f
            if not _is_scan_file(p) or not p.is_file() or not _inside(p, root):
                continue
            stem = scan_name(f)
            if in_label_dir:  # labels/foo.nii.gz belongs to ../foo.*
                labels[(rel_dir.parent / stem).as_posix()] = p
                continue
            base = _label_stem(stem)
            if base is not None:
                labels.setdefault((rel_dir / base).as_posix(), p)
                continue
            found.append(((rel_dir / stem).as_posix(), p, _kind(p)))
        if len(found) > MAX_CASES:
            raise SegLoopError(f"{root}: more than {MAX_CASES:,} scans; point SEGLOOP_DATA_DIR at a smaller folder")
    cases, seen = [], set()
    for name, path, kind in sorted(found, key=lambda t: (t[0], str(t[1]))):
        if name in seen:  # foo.nii.gz and foo.nrrd side by side: the second keeps its extension
            name = (PurePosixPath(name).parent / path.name).as_posix()
        seen.add(name)
        label = labels.get(name)
        cases.append(SourceCase(name, str(path), str(label) if label else None, kind))
    return cases


def list_cases(folder: str | Path) -> list[SourceCase]:
    """List the cases of a data folder (MSD layout or a plain folder of scans), sorted by name.

    Only file names and DICOM markers are looked at; no voxel data is read. Hidden files and
    folders are skipped, and so are symbolic links leading outside the folder.

    Parameters
    ----------
    folder : str or pathlib.Path
        The data folder (``~`` is expanded). With a ``dataset.json`` or an ``imagesTr/`` folder it is
        read as a Medical Segmentation Decathlon folder; otherwise scans are searched up to
        `MAX_DEPTH` folders deep, and a label map is matched by a suffix (``_label``, ``_seg``...)
        or a ``labels/`` folder (see the module docstring).

    Returns
    -------
    list of SourceCase
        Sorted by name; empty when the folder holds no scans.

    Raises
    ------
    segloop.errors.SegLoopError
        When `folder` is not a folder, or it holds more than `MAX_CASES` scans.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise SegLoopError(f"{folder}: data folder not found")
    root = root.resolve()
    if (root / "dataset.json").is_file() or (root / "imagesTr").is_dir():
        cases = _msd_cases(root)
    else:
        cases = _plain_cases(root)
    return sorted(cases, key=lambda c: c.name)


def dataset_label_names(folder: str | Path) -> dict[int, str]:
    """Read the foreground label names of an MSD-style folder's `dataset.json` ({"labels": {"1": "Anterior"}}).

    Parameters
    ----------
    folder : str or pathlib.Path
        Folder holding ``dataset.json``.

    Returns
    -------
    dict of int to str
        Label value -> name, background left out; {} when the folder has no readable dataset.json
        (missing, invalid JSON, no ``labels`` entry, or keys that are not integers).
    """
    try:
        labels = json.loads((Path(folder) / "dataset.json").read_text())["labels"]
        return {int(k): str(v) for k, v in labels.items() if int(k) != 0}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def check_case_name(name: str) -> str:
    """Check a case name from a deep link, refusing names that could leave the data folder.

    Parameters
    ----------
    name : str
        Case name as given in ``?case=<name>``.

    Returns
    -------
    str
        The name with surrounding white space removed.

    Raises
    ------
    segloop.errors.SegLoopError
        When the name is empty or not a string, or holds '..' or '.' parts, a backslash, a NUL
        character, a drive letter (':' in the first part), or starts with '/' or '~'.

    Examples
    --------
    >>> check_case_name(" sub-01/t1 ")
    'sub-01/t1'
    >>> check_case_name("../etc/passwd")
    Traceback (most recent call last):
    ...
    segloop.errors.SegLoopError: case name '../etc/passwd' is not allowed (it must be a name inside the data folder)
    """
    if not isinstance(name, str) or not name.strip():
        raise SegLoopError("empty case name")
    text = name.strip()
    parts = PurePosixPath(text).parts
    if (
        "\\" in text
        or "\x00" in text
        or text.startswith(("/", "~"))
        or any(p in ("..", ".") for p in parts)
        or (parts and ":" in parts[0])
    ):
        raise SegLoopError(f"case name {name!r} is not allowed (it must be a name inside the data folder)")
    return text


def resolve_case(folder: str | Path, name: str) -> SourceCase:
    """Find the case named `name` (as listed by `list_cases`) in a data folder, safely.

    Only names that `list_cases` returns can resolve, so a deep link cannot open an arbitrary file.

    Parameters
    ----------
    folder : str or pathlib.Path
        The data folder.
    name : str
        Case name from a deep link (checked with `check_case_name`).

    Returns
    -------
    SourceCase

    Raises
    ------
    segloop.errors.SegLoopError
        When the name is unsafe, the folder is missing, no case has that name, or the case's file
        lies outside the folder.
    """
    name = check_case_name(name)
    root = Path(folder).expanduser().resolve()
    for case in list_cases(root):
        if case.name == name:
            if not _inside(Path(case.image_path), root):  # belt and braces: listing already skips these
                raise SegLoopError(f"case {name!r} points outside the data folder")
            return case
    raise SegLoopError(f"no case named {name!r} in the data folder")
