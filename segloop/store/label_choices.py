"""Which labels of a scan a page shows by default, and the choices a version picker offers.

A scan can have several saved label versions (`segloop.store.label_versions`) and, when it comes from a
data folder with ground truth (a Decathlon ``labelsTr``), the reference labels of that folder. Every page
opens a case on the same labels, `default_label_version`:

1. the latest **approved** version, when the scan has one: a reviewer checked it, so it is what the
   user expects to see, even when a later correction or model output exists (not reviewed yet);
2. else the latest **correction** (a saved version of kind 'reference', ground truth imported into the
   workspace, ranks with the corrections: human-made, not approved here, as `STATUS_BY_KIND` says);
3. else the latest **model output**;
4. with no saved version at all, the reference labels from the data folder, when there are some.

"Latest" means the highest version number (versions are numbered in the order they were saved). The
reference labels from the data folder are one more choice, never the default while saved versions exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from segloop.store.database import LabelVersion
from segloop.store.vocabulary import LabelKind

#: Choice key of the reference labels that came with the scan from the data folder.
REFERENCE = "reference"
REFERENCE_TITLE = "Reference labels from the data folder"
#: Tiers of saved kinds, first tier that has a version wins (see the module docstring).
DEFAULT_PRECEDENCE: tuple[tuple[str, ...], ...] = (
    (LabelKind.APPROVED,), (LabelKind.CORRECTION, LabelKind.REFERENCE), (LabelKind.MODEL,))
#: How each kind of saved version is named to users.
KIND_TITLES = {LabelKind.MODEL: "model output", LabelKind.CORRECTION: "correction",
               LabelKind.APPROVED: "approved", LabelKind.REFERENCE: "imported reference"}


@dataclass(frozen=True)
class LabelChoice:
    """One entry of a version picker.

    Attributes
    ----------
    key : str
        Stable identifier: ``"version:<row id>"`` for a saved version, `REFERENCE` for the data folder's labels.
    title : str
        What the user reads, e.g. ``"v3 · correction · Ann"``; the default choice ends with ``" (default)"``.
    version : LabelVersion or None
        The saved version; None for the reference labels.
    """

    key: str
    title: str
    version: LabelVersion | None = None


def version_key(version_id: int) -> str:
    """Return the choice key of a saved version.

    Parameters
    ----------
    version_id : int
        Row id of the version (`LabelVersion.id`, not its per-scan number).

    Returns
    -------
    str
        ``"version:<row id>"``.

    Examples
    --------
    >>> version_key(12)
    'version:12'
    """
    return f"version:{int(version_id)}"


def default_label_version(versions: Iterable[LabelVersion]) -> LabelVersion | None:
    """Return the saved version a page shows by default: latest approved, else correction, else model output.

    Parameters
    ----------
    versions : iterable of LabelVersion
        The saved versions of one scan, any order.

    Returns
    -------
    LabelVersion or None
        The highest-numbered version of the first tier of `DEFAULT_PRECEDENCE` that has one (approved;
        then correction or imported reference; then model); None when `versions` is empty or holds
        only kinds outside those tiers.

    Examples
    --------
    >>> def v(n, kind):
    ...     return LabelVersion(n, 1, n, kind, "", None, None, "", 0.0, "", None, None)
    >>> default_label_version([v(1, "model"), v(2, "approved"), v(3, "correction"), v(4, "model")]).version
    2
    >>> default_label_version([v(1, "model"), v(2, "correction"), v(3, "model")]).version
    2
    >>> default_label_version([v(1, "model"), v(2, "model")]).version, default_label_version([])
    (2, None)
    """
    versions = list(versions)
    for tier in DEFAULT_PRECEDENCE:
        found = [v for v in versions if v.kind in tier]
        if found:
            return max(found, key=lambda v: v.version)
    return None


def _title(version: LabelVersion) -> str:
    kind = KIND_TITLES.get(version.kind, str(version.kind))
    # a model output's author is always "model": naming it again says nothing
    who = f" · {version.author}" if version.author and version.kind != LabelKind.MODEL else ""
    return f"v{version.version} · {kind}{who}"


def label_choices(versions: Sequence[LabelVersion], has_reference: bool = False) -> list[LabelChoice]:
    """List what a version picker offers for one scan: its saved versions, newest first, then the reference labels.

    Parameters
    ----------
    versions : sequence of LabelVersion
        The saved versions of one scan, any order.
    has_reference : bool, optional
        Whether the scan came from a data folder with reference labels (then `REFERENCE` is the last
        choice, titled `REFERENCE_TITLE`).

    Returns
    -------
    list of LabelChoice
        Newest version first; the choice `default_choice` picks has ``" (default)"`` at the end of its
        title. Empty when there is nothing to choose from.

    Examples
    --------
    >>> def v(n, kind, author=""):
    ...     return LabelVersion(n, 1, n, kind, "", None, None, author, 0.0, "", None, None)
    >>> [c.title for c in label_choices([v(1, "model", "model"), v(2, "correction", "Ann")], has_reference=True)]
    ['v2 · correction · Ann (default)', 'v1 · model output', 'Reference labels from the data folder']
    >>> [c.title for c in label_choices([], has_reference=True)]
    ['Reference labels from the data folder (default)']
    """
    default = default_choice(versions, has_reference)
    out = [LabelChoice(version_key(v.id), _title(v), v) for v in sorted(versions, key=lambda v: -v.version)]
    if has_reference:
        out.append(LabelChoice(REFERENCE, REFERENCE_TITLE))
    return [LabelChoice(c.key, c.title + " (default)", c.version) if c.key == default else c for c in out]


def default_choice(versions: Sequence[LabelVersion], has_reference: bool = False) -> str | None:
    """Return the key of the choice a page opens a scan on (see the module docstring for the rule).

    Parameters
    ----------
    versions : sequence of LabelVersion
        The saved versions of one scan, any order.
    has_reference : bool, optional
        Whether reference labels from the data folder are available.

    Returns
    -------
    str or None
        The key of `default_label_version`'s version; else `REFERENCE` when `has_reference`; else None.

    Examples
    --------
    >>> default_choice([], has_reference=True), default_choice([])
    ('reference', None)
    """
    version = default_label_version(versions)
    if version is not None:
        return version_key(version.id)
    return REFERENCE if has_reference else None
