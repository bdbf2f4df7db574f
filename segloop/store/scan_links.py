"""Which scan a name or a link means: unique display names, short content ids, and link resolution.

A scan's identity is its content id (`segloop.io.volume.content_id`: voxels plus geometry). People see a
display name, unique within the workspace, and links carry both: ``?case=<name>&scan=<short id>``, the
short id being the first `SHORT_ID_LEN` hex digits of the content id. The short id decides; the name is
there for people and for links written before short ids existed, which still open when the name is
unique and otherwise list the scans that share it (`resolve_link`).

These are pure functions on plain data; the app and the command line pass in the data folder's cases
and the workspace's scans.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

#: Hex digits of a content id in links and on screen: 48 bits, so two scans of one workspace sharing
#: them is a one-in-10^10 event for 10^4 scans; `resolve_link` still refuses to guess if they do.
SHORT_ID_LEN = 12
_HEX = re.compile(r"^[0-9a-f]{4,64}$")
_NUMBERED = re.compile(r"^(?P<stem>.*?) \((?P<n>\d+)\)$")


def short_id(content_id: str | None) -> str:
    """The short form of a content id shown on screen and put in links ("" for None).

    Examples
    --------
    >>> short_id("3fa9c2d1e0b4" + "7" * 52)
    '3fa9c2d1e0b4'
    """
    return (content_id or "")[:SHORT_ID_LEN]


def is_short_id(text: str | None) -> bool:
    """Whether `text` can be a (short) content id: 4 to 64 lowercase hex digits.

    >>> is_short_id("3fa9c2d1e0b4"), is_short_id("T1w"), is_short_id("")
    (True, False, False)
    """
    return bool(text) and bool(_HEX.match(text))


def unique_name(wanted: str, taken: Iterable[str]) -> str:
    """A display name no scan in `taken` has: `wanted`, else "wanted (2)", "wanted (3)", …

    Parameters
    ----------
    wanted : str
        The name the scan would get (an upload's file name without extension, a folder case's name).
        Surrounding white space is dropped; an empty name becomes "scan".
    taken : iterable of str
        The names already in use (the workspace's scans, the data folder's cases).

    Returns
    -------
    str
        `wanted`, or it with the smallest free number " (n)", n >= 2, appended. A name that already ends
        in a number ("T1w (2)") is numbered from its stem, so it becomes "T1w (3)", not "T1w (2) (2)".

    Examples
    --------
    >>> unique_name("T1w", [])
    'T1w'
    >>> unique_name("T1w", ["T1w", "T1w (2)"])
    'T1w (3)'
    >>> unique_name("T1w (2)", ["T1w", "T1w (2)"])
    'T1w (3)'
    """
    taken = set(taken)
    wanted = wanted.strip() or "scan"
    if wanted not in taken:
        return wanted
    m = _NUMBERED.match(wanted)
    stem, n = (m.group("stem"), int(m.group("n"))) if m else (wanted, 1)
    while True:
        n += 1
        name = f"{stem} ({n})"
        if name not in taken:
            return name


@dataclass(frozen=True)
class ScanChoice:
    """One scan a link may mean: a data folder case or a scan kept in the workspace.

    Parameters
    ----------
    name : str
        Display name.
    content_id : str or None
        The scan's identity; None for a data folder case not opened yet (its voxels were not read).
    image_path : str
        File or DICOM folder the scan is read from.
    origin : {"folder", "workspace"}
        Where it is listed.
    label_path : str or None
        Reference labels that come with a data folder case.
    shape : tuple of int or None
        Voxel counts when known (workspace scans: from the file header).
    created_at : float or None
        Unix time the workspace registered it (None for a folder case).
    workspace_id : int or None
        Row id in the workspace's database, when registered.
    source : str
        The workspace's `ScanSource` ("uploaded", "imported", "datadir"); "" for a folder case.
    """

    name: str
    content_id: str | None
    image_path: str
    origin: str
    label_path: str | None = None
    shape: tuple[int, ...] | None = None
    created_at: float | None = None
    workspace_id: int | None = None
    source: str = ""

    @property
    def short_id(self) -> str:
        return short_id(self.content_id)


@dataclass(frozen=True)
class LinkResolution:
    """What a link means.

    Parameters
    ----------
    choice : ScanChoice or None
        The one scan the link names, when there is exactly one.
    candidates : tuple of ScanChoice
        When the link is ambiguous (a name several scans share): those scans, for the user to pick.
    problem : str
        Why `choice` is None, in one sentence ("" when a scan was found).
    needs_check : bool
        True when `choice` is a data folder case whose content id is not known yet: the caller loads it
        and keeps it only if ``content_id(volume)`` starts with the link's short id (`matches`).
    """

    choice: ScanChoice | None
    candidates: tuple[ScanChoice, ...] = ()
    problem: str = ""
    needs_check: bool = False


def matches(content_id: str, scan: str | None) -> bool:
    """Whether a scan with `content_id` is the one a link's ``scan=`` (a short id, or None: any) names.

    >>> matches("3fa9c2d1e0b4" + "0" * 52, "3fa9c2d1e0b4"), matches("3fa9" + "0" * 60, "3fa8")
    (True, False)
    """
    return not scan or content_id.startswith(scan.lower())


def resolve_link(name: str | None, scan: str | None, folder_cases: Sequence[ScanChoice],
                 workspace_scans: Sequence[ScanChoice]) -> LinkResolution:
    """The scan a link ``?case=<name>&scan=<short id>`` means.

    Parameters
    ----------
    name : str or None
        The link's display name (``case=``).
    scan : str or None
        The link's short content id (``scan=``), which decides when given.
    folder_cases : sequence of ScanChoice
        The data folder's cases (or the demo scans), names unique among them; content ids may be None.
    workspace_scans : sequence of ScanChoice
        The workspace's scans, with their content ids (rows without one are left out by the caller or
        ignored here).

    Returns
    -------
    LinkResolution
        With a short id: the workspace scan whose content id starts with it; else the folder case called
        `name`, to be checked after loading (``needs_check``). With a name only: the one scan called so
        (a folder case and its own workspace row, same file, count once); several: ``candidates``.

    Examples
    --------
    >>> a = ScanChoice("T1w", "aa" * 32, "/ws/a.nii.gz", "workspace")
    >>> b = ScanChoice("T1w (2)", "bb" * 32, "/ws/b.nii.gz", "workspace")
    >>> resolve_link("T1w", "bbbbbbbbbbbb", [], [a, b]).choice.name
    'T1w (2)'
    >>> resolve_link("T1w", None, [], [a, b]).choice.name
    'T1w'
    """
    scan = (scan or "").strip().lower() or None
    workspace = [s for s in workspace_scans if s.content_id]
    if scan is not None:
        if not is_short_id(scan):
            return LinkResolution(None, problem=f"the link's scan id {scan!r} is not a scan id (hex digits)")
        hits = [s for s in workspace if s.content_id.startswith(scan)]
        if len(hits) == 1:
            return LinkResolution(hits[0])
        if len(hits) > 1:
            return LinkResolution(None, tuple(hits), f"{len(hits)} scans have ids starting with {scan}")
        folder = next((c for c in folder_cases if c.name == name), None)
        if folder is not None:
            if folder.content_id is None:
                return LinkResolution(folder, needs_check=True)
            if folder.content_id.startswith(scan):
                return LinkResolution(folder)
        return LinkResolution(None, problem=f"no scan with id {scan} is in the data folder or the workspace"
                                            + (f" (a scan called {name!r} is, with other voxels)"
                                               if name and _named(name, folder_cases, workspace) else ""))
    if not name:
        return LinkResolution(None, problem="the link names no scan")
    found = _named(name, folder_cases, workspace)
    if len(found) == 1:
        return LinkResolution(found[0])
    if found:
        return LinkResolution(None, tuple(found), f"{len(found)} scans are called {name!r}")
    return LinkResolution(None, problem=f"no case named {name!r} in the data folder or the workspace")


def _named(name: str, folder_cases: Sequence[ScanChoice], workspace: Sequence[ScanChoice]) -> list[ScanChoice]:
    """The scans called `name`; a workspace row of a folder case's own file counts as that case."""
    folder = [c for c in folder_cases if c.name == name]
    paths = {c.image_path for c in folder}
    return folder + [s for s in workspace if s.name == name and s.image_path not in paths]
