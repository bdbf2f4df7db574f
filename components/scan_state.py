"""What the app keeps of each scan a session has open: one typed object per scan identity.

A scan is who its voxels say it is: the key of a `ScanState` is the scan's content id
(`segloop.io.volume.content_id`), never its display name, so two uploads called `T1w.nii.gz` with other
voxels never share a prediction, an unsaved edit, a view or a save, and a rename moves nothing.
`components.session` holds these objects (one dict in ``st.session_state``) and says which is current.

Plain dataclasses: nothing here imports Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segloop.editing.history import EditHistory

#: Undo memory per scan being edited.
HISTORY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class BaseVersion:
    """The saved label version the labels being edited descend from (the parent of the next save)."""

    version_id: int
    version: int
    model_id: int | None
    kind: str

    @classmethod
    def of(cls, version) -> BaseVersion | None:
        """From a `segloop.store.database.LabelVersion` (None for None)."""
        return None if version is None else cls(version.id, version.version, version.model_id, str(version.kind))


@dataclass(frozen=True)
class SavedNote:
    """What the last save of this scan recorded, shown under the Save button."""

    version: int
    version_id: int
    dice: dict | None
    changed: int | None
    path: str


@dataclass
class Edits:
    """The label map being edited for one scan, what it descends from, and its undo history.

    Parameters
    ----------
    labels : np.ndarray or None, shape (X, Y, Z), RAS
        The array being edited (uint8, or uint16 for labels above 255); None before the scan has labels.
    base_labels : np.ndarray or None
        The labels as opened or last saved: what "unsaved" is measured against.
    base : BaseVersion or None
        The saved version `base_labels` are (None: the labels the scan came with, or none).
    history : EditHistory
        Undo/redo of this scan's edits.
    """

    labels: np.ndarray | None
    base_labels: np.ndarray | None
    base: BaseVersion | None = None
    history: EditHistory = field(default_factory=lambda: EditHistory(HISTORY_BYTES))

    @classmethod
    def start(cls, labels: np.ndarray | None, base: BaseVersion | None = None) -> Edits:
        """Edits starting from `labels` (kept as the array being edited; a copy is the base)."""
        return cls(labels, None if labels is None else labels.copy(), base)

    @property
    def unsaved(self) -> int:
        """Voxels that differ from the base (all non-zero voxels when there is no base)."""
        return differing_voxels(self.labels, self.base_labels)


def differing_voxels(labels: np.ndarray | None, base: np.ndarray | None) -> int:
    """Voxels of `labels` that differ from `base` (all non-zero voxels without a base; 0 without labels)."""
    if labels is None:
        return 0
    if base is None or base.shape != labels.shape:
        return int(np.count_nonzero(labels))
    return int(np.count_nonzero(labels != base))


@dataclass(frozen=True)
class BoxPlacement:
    """A person's say on where a whole head's hippocampus boxes go (none by default).

    Parameters
    ----------
    accept : bool
        The person accepts a registration the quality check refused on its match.
    shifts : tuple of (side, (dx, dy, dz))
        Boxes the person moved, in MNI mm, sorted by side.
    """

    accept: bool = False
    shifts: tuple[tuple[str, tuple[float, float, float]], ...] = ()

    @property
    def by_person(self) -> bool:
        return self.accept or bool(self.shifts)

    @property
    def key(self) -> str:
        """Part of a prediction's cache key: the same scan, model and placement give the same prediction."""
        if not self.by_person:
            return "software"
        moved = ";".join(f"{side}{','.join(f'{v:g}' for v in d)}" for side, d in self.shifts)
        return f"person:{int(self.accept)}:{moved}"

    def shift_map(self) -> dict[str, tuple[float, float, float]]:
        return dict(self.shifts)

    def moved(self, side: str, shift: tuple[float, float, float]) -> BoxPlacement:
        """This placement with `side`'s box moved to `shift` (mm; all zero puts it back)."""
        shifts = {**self.shift_map(), side: tuple(float(v) for v in shift)}
        return BoxPlacement(self.accept, tuple(sorted((k, v) for k, v in shifts.items() if any(v))))


@dataclass
class ScanState:
    """Everything the app layer keeps of one scan in one browser session.

    Parameters
    ----------
    key : str
        The scan's identity: its content id (64 hex digits).
    name : str
        Display name, unique among the scans the app lists (the data folder's name, or the workspace's).
    source : str
        Where it was opened from: "data folder", "demo", "workspace" or "upload".
    workspace_id : int or None
        Its row in the workspace's database, once registered.
    view : dict
        What the user looks at: "slices" ({plane: index}), "window" ({"preset", "center", "width"} or None),
        and the volume view's "crosshair" and "slices_rev".
    predictions : dict
        `components.segmentation.CachedPrediction` by "<model sha>|<mode>".
    edits : Edits or None
        The label map on screen and its unsaved work; None until labels are first shown.
    shown : str or None
        Key of the saved label choice on screen (`segloop.store.label_choices`), None for none.
    reference : np.ndarray or None
        The labels it came with from the data folder (read only).
    message, last_box : str or None
        The editor's last message and last box drawn, about this scan.
    saved : SavedNote or None
        What the last save recorded.
    windows : dict
        Preset window (center, width) by preset name, computed once.
    placement : BoxPlacement
        A person's say on a whole head's boxes (accepting a refused registration, moving a box).
    registration : segloop.wholehead.registration.Registration or None
        A whole head's latest registration (reused when the person accepts it or moves a box).
    """

    key: str
    name: str
    source: str
    workspace_id: int | None = None
    view: dict = field(default_factory=lambda: {"slices": {}, "window": None})
    predictions: dict[str, Any] = field(default_factory=dict)
    edits: Edits | None = None
    shown: str | None = None
    reference: np.ndarray | None = None
    message: str | None = None
    last_box: str | None = None
    saved: SavedNote | None = None
    windows: dict = field(default_factory=dict)
    placement: BoxPlacement = field(default_factory=BoxPlacement)
    registration: Any = None

    @property
    def unsaved(self) -> int:
        """Voxels of unsaved edits this session holds for the scan (0 for none)."""
        return 0 if self.edits is None else self.edits.unsaved
