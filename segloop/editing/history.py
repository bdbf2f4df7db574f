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
    """Return the smallest signed integer type able to hold every flat index of an array shape.

    int32 halves the memory of an edit's indices compared with int64 on all but enormous volumes.

    Parameters
    ----------
    shape : tuple of int
        Array shape.

    Returns
    -------
    type
        ``np.int32`` when the array has at most 2**31 - 1 elements, else ``np.int64``.

    Examples
    --------
    >>> index_dtype((512, 512, 512)).__name__, index_dtype((2000, 2000, 1000)).__name__
    ('int32', 'int64')
    """
    return np.int32 if int(np.prod(shape, dtype=np.int64)) <= np.iinfo(np.int32).max else np.int64


@dataclass(frozen=True)
class Edit:
    """What one editing operation changed: flat C-order indices, old and new uint8 values.

    Parameters
    ----------
    indices : np.ndarray of int32 or int64, shape (N,)
        Flat C-order indices of the changed voxels (see `index_dtype`).
    old, new : np.ndarray of uint8, shape (N,)
        Label values before and after the operation.
    description : str
        What the user did, shown in the undo/redo lists, e.g. "Box fill label 2 on axial 1".
    shape : tuple of int, optional
        Shape of the label map the edit was made on; when set, `undo`/`redo` refuse other shapes.
    """

    indices: np.ndarray
    old: np.ndarray
    new: np.ndarray
    description: str
    shape: tuple[int, ...] = field(default=())

    def __len__(self) -> int:
        """Number of changed voxels."""
        return int(self.indices.size)

    @property
    def is_empty(self) -> bool:
        """True when the operation changed no voxel (such edits are not recorded)."""
        return self.indices.size == 0

    @property
    def nbytes(self) -> int:
        """Memory held by this edit's arrays, in bytes (indices + old + new)."""
        return int(self.indices.nbytes + self.old.nbytes + self.new.nbytes)

    def _write(self, labels: np.ndarray, values: np.ndarray) -> None:
        if self.shape and tuple(labels.shape) != tuple(self.shape):
            raise ValueError(f"edit was made on shape {self.shape}, not {labels.shape}")
        if labels.flags.c_contiguous:
            labels.reshape(-1)[self.indices] = values
        else:
            labels.flat[self.indices] = values

    def undo(self, labels: np.ndarray) -> None:
        """Put the old values back into `labels`, in place.

        Parameters
        ----------
        labels : np.ndarray of uint8, shape `shape`
            The label map the edit was made on.

        Returns
        -------
        None

        Raises
        ------
        ValueError
            When the edit records a shape and `labels` has another.
        """
        self._write(labels, self.old)

    def redo(self, labels: np.ndarray) -> None:
        """Write the new values into `labels` again, in place.

        Parameters
        ----------
        labels : np.ndarray of uint8, shape `shape`
            The label map the edit was made on.

        Returns
        -------
        None

        Raises
        ------
        ValueError
            When the edit records a shape and `labels` has another.
        """
        self._write(labels, self.new)


def empty_edit(labels: np.ndarray, description: str) -> Edit:
    """Return an `Edit` that changed nothing, for an operation that turned out to be a no-op.

    Parameters
    ----------
    labels : np.ndarray
        The label map; only its shape is used.
    description : str
        What the user did.

    Returns
    -------
    Edit
        With empty index (`index_dtype` of the shape) and uint8 value arrays; ``is_empty`` is True.
    """
    return Edit(
        np.zeros(0, index_dtype(labels.shape)), np.zeros(0, np.uint8), np.zeros(0, np.uint8), description, tuple(labels.shape)
    )


def full_region(shape: tuple[int, ...]) -> tuple[slice, ...]:
    """Return the region (tuple of slices with explicit starts) covering a whole array.

    Parameters
    ----------
    shape : tuple of int
        Array shape.

    Returns
    -------
    tuple of slice
        ``slice(0, n)`` per axis, the form `diff_region` expects.

    Examples
    --------
    >>> full_region((2, 3))
    (slice(0, 2, None), slice(0, 3, None))
    """
    return tuple(slice(0, n) for n in shape)


def diff_region(labels: np.ndarray, before: np.ndarray, region: tuple[slice, ...], description: str) -> Edit:
    """Build the `Edit` of an operation from a copy `before` of labels[region] and the array now.

    Only the region is compared, so an edit on one slice of a large volume stays cheap.

    Parameters
    ----------
    labels : np.ndarray of uint8, shape (X, Y, Z)
        The label map after the operation.
    before : np.ndarray, shape of ``labels[region]``
        Copy of ``labels[region]`` taken before the operation.
    region : tuple of slice
        One slice per axis with explicit integer starts (or None for 0) and step 1.
    description : str
        What the user did.

    Returns
    -------
    Edit
        Flat C-order indices of the changed voxels (ascending) in the whole array, with old and new
        values cast to uint8; an empty edit when nothing changed.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((2, 3), np.uint8)
    >>> region = (slice(1, 2), slice(0, 3))
    >>> before = labels[region].copy()
    >>> labels[1, 2] = 4
    >>> edit = diff_region(labels, before, region, "paint")
    >>> edit.indices.tolist(), edit.old.tolist(), edit.new.tolist()
    ([5], [0], [4])
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
    volume is compared. Useful for operations that are not in segloop.editing.operations, e.g. accepting a prediction.

    Parameters
    ----------
    labels : np.ndarray of uint8, shape (X, Y, Z)
        Label map, modified in place by `fn`.
    fn : callable
        Called as ``fn(labels, *args, **kwargs)``; its return value is ignored.
    *args, **kwargs
        Passed to `fn`.
    description : str, optional
        What the user did, for the undo list.
    region : tuple of slice, optional
        Where the change is known to stay (explicit starts, step 1); changes outside it are not
        recorded. The whole array when None.

    Returns
    -------
    Edit
        The changed voxels (see `diff_region`); empty when `fn` changed nothing.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((4, 4, 4), np.uint8)
    >>> def accept(lab, value):
    ...     lab[1, 1, 1] = value
    >>> edit = apply_edit(labels, accept, 3, description="Accept prediction")
    >>> edit.indices.tolist(), edit.new.tolist(), edit.description
    ([21], [3], 'Accept prediction')
    """
    region = full_region(labels.shape) if region is None else region
    before = labels[region].copy()
    fn(labels, *args, **kwargs)
    return diff_region(labels, before, region, description)


class EditHistory:
    """Undo and redo stacks of Edits under a memory budget.

    A new push clears the redo stack. When undo + redo edits together take more than `max_bytes`,
    the oldest undo edits are dropped (then, if still over, the farthest redo edits). An edit larger
    than the whole budget is not kept at all. Empty edits are never recorded. The count of edits
    dropped for the budget is kept in the ``dropped`` attribute.

    Parameters
    ----------
    max_bytes : int, optional
        Memory budget in bytes for all recorded edits (`DEFAULT_MAX_BYTES`, 64 MiB, by default).

    Raises
    ------
    ValueError
        When `max_bytes` is not positive.

    Examples
    --------
    >>> import numpy as np
    >>> from segloop.editing.operations import paint_box
    >>> labels = np.zeros((3, 4, 5), np.uint8)
    >>> history = EditHistory()
    >>> history.push(paint_box(labels, "axial", 1, (0, 1), (0, 2), 2))
    True
    >>> int(labels.sum()), history.descriptions
    (12, ['Box fill label 2 on axial 1'])
    >>> history.undo(labels).description, int(labels.sum()), history.can_redo
    ('Box fill label 2 on axial 1', 0, True)
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
        """True when at least one edit can be undone."""
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        """True when at least one undone edit can be redone."""
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
        """Number of undoable edits."""
        return len(self._undo)

    def push(self, edit: Edit) -> bool:
        """Record an edit that was already applied to the labels; clears the redo stack.

        Parameters
        ----------
        edit : Edit
            Usually the return value of an operation in `segloop.editing.operations`.

        Returns
        -------
        bool
            True when recorded; False when not kept: empty (the redo stack is then left alone) or
            larger than the whole budget (counted in ``dropped``). Older edits may be dropped to make room.
        """
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
        """Revert the most recent edit in `labels`, in place, and move it to the redo stack.

        Parameters
        ----------
        labels : np.ndarray of uint8, shape (X, Y, Z)
            The label map the edits were made on.

        Returns
        -------
        Edit or None
            The edit undone; None when there is nothing to undo.

        Raises
        ------
        ValueError
            When `labels` does not have the shape the edit was made on (the edit is then lost from
            both stacks).
        """
        if not self._undo:
            return None
        edit = self._undo.pop()
        edit.undo(labels)
        self._redo.append(edit)
        return edit

    def redo(self, labels: np.ndarray) -> Edit | None:
        """Re-apply the most recently undone edit to `labels`, in place, and move it back to the undo stack.

        Parameters
        ----------
        labels : np.ndarray of uint8, shape (X, Y, Z)
            The label map the edits were made on.

        Returns
        -------
        Edit or None
            The edit redone; None when there is nothing to redo.

        Raises
        ------
        ValueError
            When `labels` does not have the shape the edit was made on (the edit is then lost from
            both stacks).
        """
        if not self._redo:
            return None
        edit = self._redo.pop()
        edit.redo(labels)
        self._undo.append(edit)
        return edit

    def clear(self) -> None:
        """Forget all undo and redo edits (e.g. when another scan is opened); ``dropped`` is kept.

        Returns
        -------
        None
        """
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
