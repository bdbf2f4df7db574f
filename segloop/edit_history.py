"""Undo/redo for label edits that stores only the voxels each edit changed.

An `Edit` holds flat (C-order) indices of the changed voxels with their old and new values, so
undoing a brush stroke on a 512^3 volume costs a few kilobytes, not a copy of the volume.
`EditHistory` keeps the undo and redo stacks under a memory budget by dropping the oldest edits.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

#: Default memory budget of an EditHistory (bytes of indices + old + new values).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def index_dtype(shape: tuple[int, ...]) -> type:
    """Smallest signed integer type able to hold every flat index of `shape` (int32 up to 2^31 voxels)."""
    return np.int32 if int(np.prod(shape, dtype=np.int64)) <= np.iinfo(np.int32).max else np.int64


@dataclass(frozen=True)
class Edit:
    """What one editing operation changed: flat C-order indices, old and new uint8 values."""

    indices: np.ndarray
    old: np.ndarray
    new: np.ndarray
    description: str
    shape: tuple[int, ...] = field(default=())

    def __len__(self) -> int:
        return int(self.indices.size)

    @property
    def is_empty(self) -> bool:
        """True when the operation changed no voxel (such edits are not recorded)."""
        return self.indices.size == 0

    @property
    def nbytes(self) -> int:
        """Memory held by this edit's arrays."""
        return int(self.indices.nbytes + self.old.nbytes + self.new.nbytes)

    def _write(self, labels: np.ndarray, values: np.ndarray) -> None:
        if self.shape and tuple(labels.shape) != tuple(self.shape):
            raise ValueError(f"edit was made on shape {self.shape}, not {labels.shape}")
        if labels.flags.c_contiguous:
            labels.reshape(-1)[self.indices] = values
        else:
            labels.flat[self.indices] = values

    def undo(self, labels: np.ndarray) -> None:
        """Put the old values back (in place)."""
        self._write(labels, self.old)

    def redo(self, labels: np.ndarray) -> None:
        """Write the new values again (in place)."""
        self._write(labels, self.new)


def empty_edit(labels: np.ndarray, description: str) -> Edit:
    """An Edit that changed nothing."""
    return Edit(
        np.zeros(0, index_dtype(labels.shape)), np.zeros(0, np.uint8), np.zeros(0, np.uint8), description, tuple(labels.shape)
    )


def full_region(shape: tuple[int, ...]) -> tuple[slice, ...]:
    """Region (tuple of slices with explicit starts) covering a whole array."""
    return tuple(slice(0, n) for n in shape)


def diff_region(labels: np.ndarray, before: np.ndarray, region: tuple[slice, ...], description: str) -> Edit:
    """Edit from a copy `before` of labels[region] taken before an operation and the array now.

    Only the region is compared, so an edit on one slice of a large volume stays cheap.
    `region` is a tuple of slices with explicit integer starts (step 1).
    """
    after = labels[region]
    changed = np.nonzero(after != before)
    if changed[0].size == 0:
        return empty_edit(labels, description)
    coords = tuple(c + (s.start or 0) for c, s in zip(changed, region))
    flat = np.ravel_multi_index(coords, labels.shape).astype(index_dtype(labels.shape))
    return Edit(flat, before[changed].astype(np.uint8), after[changed].astype(np.uint8), description, tuple(labels.shape))


def apply_edit(
    labels: np.ndarray,
    fn: Callable[..., Any],
    *args: Any,
    description: str = "Edit",
    region: tuple[slice, ...] | None = None,
    **kwargs: Any,
) -> Edit:
    """Run `fn(labels, *args, **kwargs)` (which modifies labels in place) and return what it changed.

    Give `region` (tuple of slices) when the change is known to stay inside it; by default the whole
    volume is compared. Useful for operations that are not in segloop.editing, e.g. accepting a prediction.
    """
    region = full_region(labels.shape) if region is None else region
    before = labels[region].copy()
    fn(labels, *args, **kwargs)
    return diff_region(labels, before, region, description)


class EditHistory:
    """Undo and redo stacks of Edits under a memory budget.

    A new push clears the redo stack. When undo + redo edits together take more than `max_bytes`,
    the oldest undo edits are dropped (then, if still over, the farthest redo edits). An edit larger
    than the whole budget is not kept at all. Empty edits are never recorded.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = int(max_bytes)
        self._undo: deque[Edit] = deque()
        self._redo: list[Edit] = []
        self._bytes = 0
        self.dropped = 0  # number of edits dropped to respect the budget

    @property
    def bytes_used(self) -> int:
        """Memory held by all recorded edits (undo + redo)."""
        return self._bytes

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def descriptions(self) -> list[str]:
        """Descriptions of the undoable edits, oldest first (the last one is undone next)."""
        return [e.description for e in self._undo]

    @property
    def redo_descriptions(self) -> list[str]:
        """Descriptions of the redoable edits, the next one to redo first."""
        return [e.description for e in reversed(self._redo)]

    def __len__(self) -> int:
        return len(self._undo)

    def push(self, edit: Edit) -> bool:
        """Record an edit that was already applied; returns False if it was not kept (empty or too big)."""
        if edit.is_empty:
            return False
        self._redo.clear()
        self._recount()
        if edit.nbytes > self.max_bytes:
            self.dropped += 1
            return False
        self._undo.append(edit)
        self._bytes += edit.nbytes
        self._enforce_budget()
        return True

    def undo(self, labels: np.ndarray) -> Edit | None:
        """Revert the most recent edit in `labels` (in place); None when there is nothing to undo."""
        if not self._undo:
            return None
        edit = self._undo.pop()
        edit.undo(labels)
        self._redo.append(edit)
        return edit

    def redo(self, labels: np.ndarray) -> Edit | None:
        """Re-apply the most recently undone edit; None when there is nothing to redo."""
        if not self._redo:
            return None
        edit = self._redo.pop()
        edit.redo(labels)
        self._undo.append(edit)
        return edit

    def clear(self) -> None:
        """Forget all edits (e.g. when another scan is opened)."""
        self._undo.clear()
        self._redo.clear()
        self._bytes = 0

    def _recount(self) -> None:
        self._bytes = sum(e.nbytes for e in self._undo) + sum(e.nbytes for e in self._redo)

    def _enforce_budget(self) -> None:
        while self._bytes > self.max_bytes and self._undo:
            self._bytes -= self._undo.popleft().nbytes
            self.dropped += 1
        while self._bytes > self.max_bytes and self._redo:
            self._bytes -= self._redo.pop(0).nbytes
            self.dropped += 1
