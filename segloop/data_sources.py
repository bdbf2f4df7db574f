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

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from segloop.dicom_series import is_dicom_file
from segloop.errors import SegLoopError
from segloop.loading import NIFTI_SUFFIXES, scan_name

SCAN_FILE_SUFFIXES = NIFTI_SUFFIXES + (".nrrd", ".nhdr", ".mha", ".mhd")
LABEL_SUFFIXES = ("_label", "_labels", "_seg", "_segmentation", "_mask")
LABEL_DIRS = ("labels", "labelsTr", "labelsTs")
#: Guards against pointing the data folder at something huge.
MAX_DEPTH = 6
MAX_CASES = 100000


@dataclass(frozen=True)
class SourceCase:
    """One scan the app can open: a file or DICOM folder, with its label map if one exists."""

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
    """The cases of a data folder (MSD layout or a plain folder of scans), sorted by name."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise SegLoopError(f"{folder}: data folder not found")
    root = root.resolve()
    if (root / "dataset.json").is_file() or (root / "imagesTr").is_dir():
        cases = _msd_cases(root)
    else:
        cases = _plain_cases(root)
    return sorted(cases, key=lambda c: c.name)


def check_case_name(name: str) -> str:
    """Refuse names that could leave the data folder ('..', absolute paths, odd characters)."""
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
    """The case named `name` (as listed by `list_cases`) in `folder`; SegLoopError if unknown or unsafe."""
    name = check_case_name(name)
    root = Path(folder).expanduser().resolve()
    for case in list_cases(root):
        if case.name == name:
            if not _inside(Path(case.image_path), root):  # belt and braces: listing already skips these
                raise SegLoopError(f"case {name!r} points outside the data folder")
            return case
    raise SegLoopError(f"no case named {name!r} in the data folder")
