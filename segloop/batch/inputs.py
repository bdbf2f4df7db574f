"""From the command line's INPUTS to a list of jobs: one scan each, with a unique output name.

INPUTS may be scan files (NIfTI, NRRD, MHA, a DICOM .zip or one .dcm of a series), folders (listed
with `segloop.data.folders.list_cases`: an MSD folder, a BIDS-like tree, a DICOM series folder),
glob patterns (quoted, so the shell leaves them alone; ``**`` recurses) or CSV manifests (a ``path``
column and an optional ``subject`` column; the subject id becomes the output name, relative paths are
read from the manifest's folder).

Output names are the subject id, else the scan's name (for a folder, its path inside the folder with
``/`` turned into ``_``), reduced to letters, digits, ``.``, ``_`` and ``-``. Names that still
collide (two ``T1.nii.gz`` from different folders; compared case-insensitively, for file systems that
ignore case) all get ``-<first 8 hex digits of sha256(absolute path)>`` appended: the same inputs
always get the same names, whatever their order, so a rerun finds its earlier results.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from segloop.data.folders import list_cases
from segloop.errors import SegLoopError
from segloop.io.readers import SCAN_SUFFIXES, scan_name

#: File endings taken from a glob's matches (other files, e.g. notes or spreadsheets, are left out).
GLOB_SUFFIXES = SCAN_SUFFIXES + (".zip", ".dcm")
GLOB_CHARS = set("*?[")
#: Longest output name kept (file systems allow 255 bytes; the status file adds ".json").
MAX_NAME = 120


@dataclass(frozen=True)
class Job:
    """One scan to segment.

    Parameters
    ----------
    name : str
        Unique output name: the label map is ``<out>/<name>.nii.gz``, the status ``<out>/status/<name>.json``.
    path : str
        Absolute path of the scan file or DICOM series folder (it may be missing: a manifest row
        naming a missing file fails on its own, without stopping the batch).
    subject : str
        The manifest's subject id, "" otherwise.
    reference : str or None
        A label map found beside the scan in its folder (MSD ``labelsTr/``...), recorded in the workspace.
    """

    name: str
    path: str
    subject: str = ""
    reference: str | None = None


@dataclass
class InputPlan:
    """The jobs of a batch and what the user should know about how they were named.

    Attributes
    ----------
    jobs : list of Job
        In the order the inputs gave them, each input path once.
    notes : list of str
        Plain sentences: renamed collisions, duplicates dropped, non-scan files a glob matched.
    """

    jobs: list[Job]
    notes: list[str] = field(default_factory=list)


def safe_name(text: str) -> str:
    """Reduce a subject id or scan name to a file name: letters, digits, '.', '_', '-'.

    Parameters
    ----------
    text : str
        Any text (a subject id, a relative path like ``sub-01/anat/T1w``).

    Returns
    -------
    str
        Runs of other characters (``/``, spaces...) become one ``_``; leading dots are dropped (no hidden
        files); at most `MAX_NAME` characters; "scan" when nothing is left.

    Examples
    --------
    >>> safe_name("sub-01/anat/T1w")
    'sub-01_anat_T1w'
    >>> safe_name("../etc/passwd")
    '_etc_passwd'
    >>> safe_name("Müller, J.")
    'M_ller_J.'
    """
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip()).lstrip(".")
    return name[:MAX_NAME] or "scan"


def path_hash(path: str | Path, digits: int = 8) -> str:
    """First `digits` hex digits of sha256 of an absolute path (str), for names that must stay unique."""
    return hashlib.sha256(str(path).encode()).hexdigest()[:digits]


def read_manifest(path: str | Path) -> list[tuple[str, str]]:
    """Read a CSV manifest: (scan path, subject id) per row.

    Parameters
    ----------
    path : str or pathlib.Path
        CSV file with a header row holding ``path`` and optionally ``subject`` (case and surrounding
        spaces ignored); other columns are ignored.

    Returns
    -------
    list of (str, str)
        Absolute scan path (relative paths are taken from the manifest's folder, ``~`` expanded) and
        subject id ("" without a subject column or with an empty cell), in file order.

    Raises
    ------
    SegLoopError
        When the file cannot be read, has no ``path`` column, or a row has an empty path.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
            if "path" not in columns:
                raise SegLoopError(f"{path.name}: a manifest needs a 'path' column (and optionally 'subject'); "
                                   f"found {sorted(c for c in columns if c) or 'no header'}")
            rows = []
            for number, row in enumerate(reader, start=2):
                value = (row.get(columns["path"]) or "").strip()
                if not value:
                    raise SegLoopError(f"{path.name}: row {number} has no path")
                subject = (row.get(columns["subject"]) or "").strip() if "subject" in columns else ""
                scan = Path(value).expanduser()
                if not scan.is_absolute():
                    scan = path.parent / scan
                rows.append((os.path.abspath(scan), subject))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SegLoopError(f"{path.name}: the manifest could not be read ({exc})") from None
    return rows


def _folder_candidates(folder: Path) -> list[tuple[str, str, str, str | None]]:
    cases = list_cases(folder)
    if not cases:
        raise SegLoopError(f"{folder}: no scans found in this folder")
    return [(c.name, c.image_path, "", c.label_path) for c in cases]


def _candidates(text: str, notes: list[str]) -> list[tuple[str, str, str, str | None]]:
    """(name, absolute path, subject, reference label) for one INPUTS entry."""
    path = Path(text).expanduser()
    if path.is_file() and path.name.lower().endswith(".csv"):
        return [(subject or scan_name(p), p, subject, None) for p, subject in read_manifest(path)]
    if path.is_dir():
        return _folder_candidates(path)
    if path.exists():
        return [(scan_name(path), os.path.abspath(path), "", None)]
    if not GLOB_CHARS & set(text):
        raise SegLoopError(f"{text}: no such file or folder")
    matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
    if not matches:
        raise SegLoopError(f"{text}: the pattern matches no files")
    out, skipped, series = [], 0, set()
    for m in matches:
        p = Path(m)
        if p.is_dir():
            out += _folder_candidates(p)
        elif p.name.lower().endswith(".csv"):
            out += _candidates(m, notes)
        elif p.name.lower().endswith(".dcm"):  # one scan per series, not one per slice file
            if p.parent not in series:
                series.add(p.parent)
                out.append((p.parent.name, os.path.abspath(p.parent), "", None))
        elif p.name.lower().endswith(GLOB_SUFFIXES):
            out.append((scan_name(p), os.path.abspath(p), "", None))
        else:
            skipped += 1
    if skipped:
        notes.append(f"{text}: {skipped} matching file(s) are not scans by their name and were left out")
    if not out:
        raise SegLoopError(f"{text}: the pattern matches no scans")
    return out


def unique_names(candidates: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Output names for (base name, absolute path) pairs: base names made safe, collisions suffixed.

    Parameters
    ----------
    candidates : list of (str, str)
        Wanted name and absolute path of each input; paths are distinct.

    Returns
    -------
    names : list of str
        One unique name per candidate (unique also when compared case-insensitively).
    notes : list of str
        One sentence per group of colliding inputs, naming what they were written as.

    Examples
    --------
    >>> names, notes = unique_names([("T1", "/a/T1.nii.gz"), ("T1", "/b/T1.nii.gz"), ("T2", "/a/T2.nii.gz")])
    >>> names[2], names[0].startswith("T1-"), names[0] != names[1], len(notes)
    ('T2', True, True, 1)
    """
    bases = [safe_name(n) for n, _ in candidates]
    groups: dict[str, list[int]] = {}
    for i, b in enumerate(bases):
        groups.setdefault(b.lower(), []).append(i)
    names, notes = list(bases), []
    for members in groups.values():
        if len(members) > 1:
            for i in members:
                names[i] = f"{bases[i][:MAX_NAME - 9]}-{path_hash(candidates[i][1])}"
            notes.append(f"{len(members)} inputs share the name {bases[members[0]]}; written as "
                         + ", ".join(f"{names[i]} ({candidates[i][1]})" for i in members))
    seen: set[str] = set()
    for i, n in enumerate(names):  # a suffixed name meeting a real one: longer hashes until unique
        digits = 16
        while n.lower() in seen:
            n = f"{bases[i][:MAX_NAME - digits - 1]}-{path_hash(candidates[i][1], digits)}"
            digits += 8
        names[i] = n
        seen.add(n.lower())
    return names, notes


def expand_inputs(inputs: list[str]) -> InputPlan:
    """Turn INPUTS (files, folders, globs, CSV manifests) into jobs with unique output names.

    Parameters
    ----------
    inputs : list of str
        As typed on the command line (see the module docstring).

    Returns
    -------
    InputPlan
        Jobs in input order, each path once (a scan listed twice, e.g. as a file and inside a folder,
        is segmented once, under its manifest subject id if a manifest gave one, else under its first
        name), with notes on renamed collisions and dropped entries.

    Raises
    ------
    SegLoopError
        When there are no inputs, a path does not exist, a pattern matches nothing, a folder holds no
        scans, or a manifest is unusable. Nothing is segmented then: these are typing mistakes, unlike
        a bad scan, which fails on its own later.
    """
    if not inputs:
        raise SegLoopError("no inputs: give scan files, folders, glob patterns or a CSV manifest")
    notes: list[str] = []
    found: list[tuple[str, str, str, str | None]] = []
    for text in inputs:
        found += _candidates(text, notes)
    unique, seen, dropped = [], {}, 0
    for name, path, subject, reference in found:
        key = os.path.realpath(path)
        if key in seen:  # keep the first, but a manifest's subject id names it whatever the order
            dropped += 1
            i = seen[key]
            if subject and not unique[i][2]:
                unique[i] = (name, unique[i][1], subject, unique[i][3] or reference)
            continue
        seen[key] = len(unique)
        unique.append((name, path, subject, reference))
    if dropped:
        notes.append(f"{dropped} input(s) were given more than once; each scan is segmented once")
    names, renamed = unique_names([(n, p) for n, p, _, _ in unique])
    jobs = [Job(name, p, subject, ref) for name, (_, p, subject, ref) in zip(names, unique)]
    return InputPlan(jobs, notes + renamed)
