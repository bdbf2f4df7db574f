"""Undo/redo for label edits that stores only the voxels each edit changed.

An `Edit` holds flat (C-order) indices of the changed voxels with their old and new values, so
undoing a brush stroke on a 512^3 volume costs a few kilobytes, not a copy of the volume.
`EditHistory` keeps the undo and redo stacks under a memory budget by dropping the oldest edits.

Label maps are uint8, or uint16 when a label is above 255 (FreeSurfer-style 1002, 2017...; see
`segloop.io.readers.labels_from_array`). Edits keep old and new values in the map's own dtype, so
undo and redo give back exactly the values that were there. Painting a label that the map's dtype
cannot hold (300 into a uint8 map) widens the map to uint16 first (`widen_for`, `apply_widening`);
the edit remembers the earlier dtype (``Edit.widened_from``) so `EditHistory.undo_labels` gives back
the uint8 map exactly. Nothing is ever cast in a way that could wrap a value (1002 -> 234).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from segloop.errors import SegLoopError

#: Default memory budget of an EditHistory (bytes of indices + old + new values).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: Largest label value the editor can hold (uint16).
MAX_LABEL = 65535


#: Where a message template names the label it is about; `wording` fills it in ("anterior", "label 2").
LABEL = "{label}"
LABEL_CAPITAL = "{Label}"  # the same at the start of a sentence ("Anterior", "Label 2")
_PLACES = re.compile(r"\{label\}|\{Label\}")


def label_wording(value: int, names: Mapping[int, str] | None = None) -> str:
    """How a message names label `value`: its name in `names`, else "label <value>"; 0 is the background.

    >>> label_wording(1, {1: "anterior"}), label_wording(7, {1: "anterior"}), label_wording(0)
    ('anterior', 'label 7', 'background')
    """
    name = (names or {}).get(int(value)) or ("background" if int(value) == 0 else None)
    return name or f"label {int(value)}"


def wording(template: str, label: int | None, names: Mapping[int, str] | None = None) -> str:
    """A message from its template: `LABEL` and `LABEL_CAPITAL` become the label's name (`label_wording`).

    Other text is left exactly as it is (no format-string parsing), so values with braces are safe.

    >>> wording("Grow {label} by 1 voxel", 1, {1: "anterior"})
    'Grow anterior by 1 voxel'
    >>> wording("{Label} is not drawn on axial slice 3", 2)
    'Label 2 is not drawn on axial slice 3'
    """
    if label is None:
        return template
    text = label_wording(label, names)
    words = {LABEL: text, LABEL_CAPITAL: text[:1].upper() + text[1:]}
    return _PLACES.sub(lambda m: words[m.group(0)], template)  # one pass: a name is never read as a place


class EditRefused(SegLoopError):
    """An edit the editor will not make; its message names the label as the caller's page does.

    Parameters
    ----------
    template : str
        One sentence, with `LABEL` / `LABEL_CAPITAL` where the label is named.
    label : int, optional
        The label the sentence is about.
    """

    def __init__(self, template: str, label: int | None = None) -> None:
        self.template, self.label = template, label
        super().__init__(wording(template, label))

    def describe(self, names: Mapping[int, str] | None = None) -> str:
        """The message with the label named from `names` (label value -> name)."""
        return wording(self.template, self.label, names)


class LabelValueError(EditRefused, ValueError):
    """A label value the editor cannot write: negative, above 65535, not a whole number, or too
    large for the label map's dtype where the map may not be widened.

    Both a `segloop.errors.SegLoopError` (its message is shown to the user as-is) and a
    `ValueError` (what the editing operations have always raised for a bad value).

    Parameters
    ----------
    template : str
        One sentence naming the value and what is wrong with it (see `EditRefused`).
    label : int, optional
        The label value it is about.
    """


def check_label_value(value: Any) -> int:
    """Return a label value as an int after checking the editor can hold it (0..65535, whole number).

    Parameters
    ----------
    value : int, numpy integer, or float holding a whole number
        The label value.

    Returns
    -------
    int
        `value` as a Python int.

    Raises
    ------
    LabelValueError
        When `value` is negative, above 65535, a fraction, NaN/Inf or not a number.

    Examples
    --------
    >>> check_label_value(1002), check_label_value(2.0)
    (1002, 2)
    >>> check_label_value(70000)
    Traceback (most recent call last):
    ...
    segloop.editing.history.LabelValueError: label value 70000 is outside 0..65535; SegLoop label maps hold whole numbers 0..65535
    """
    if isinstance(value, (int, np.integer, np.bool_)):  # bool is an int: True is label 1
        number = int(value)
    elif isinstance(value, (float, np.floating)):
        if not np.isfinite(value) or value != np.floor(value):
            raise LabelValueError(f"label value {float(value):g} is not a whole number")
        number = int(value)
    else:
        raise LabelValueError(f"label value {value!r} is not a number")
    if not 0 <= number <= MAX_LABEL:
        raise LabelValueError(
            f"label value {number} is outside 0..{MAX_LABEL}; SegLoop label maps hold whole numbers 0..{MAX_LABEL}"
        )
    return number


def _fits(values: np.ndarray, dtype: np.dtype) -> bool:
    """True when every value can be stored in `dtype` unchanged."""
    dtype = np.dtype(dtype)
    if values.size == 0 or np.can_cast(values.dtype, dtype, casting="safe"):
        return True
    if dtype.kind not in "ui" or values.dtype.kind not in "uib":
        return False
    info = np.iinfo(dtype)
    return int(values.min()) >= info.min and int(values.max()) <= info.max


def value_fits(labels: np.ndarray, value: int) -> bool:
    """Tell whether label `value` can be written into `labels` without changing its dtype.

    Parameters
    ----------
    labels : np.ndarray of uint8 or uint16
        Label map.
    value : int
        Label value.

    Returns
    -------
    bool
        False for 300 in a uint8 map; True for any integer dtype whose range holds `value`.

    Examples
    --------
    >>> import numpy as np
    >>> value_fits(np.zeros(2, np.uint8), 255), value_fits(np.zeros(2, np.uint8), 1002)
    (True, False)
    """
    return _fits(np.asarray([int(value)]), labels.dtype)


def widen_for(labels: np.ndarray, value: int) -> np.ndarray:
    """Return `labels` itself when it can hold label `value`, else a uint16 copy of it.

    Parameters
    ----------
    labels : np.ndarray of uint8 or uint16, shape (X, Y, Z)
        Label map; never modified.
    value : int
        Label about to be written, 0..65535.

    Returns
    -------
    np.ndarray
        `labels` (same object) when `value` fits its dtype; otherwise a new C-contiguous uint16
        array with the same values.

    Raises
    ------
    LabelValueError
        When `value` is not a label the editor can hold (see `check_label_value`), or `labels`
        has a dtype that cannot be widened to uint16 without loss.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((2, 2, 2), np.uint8)
    >>> widen_for(labels, 3) is labels, widen_for(labels, 1002).dtype
    (True, dtype('uint16'))
    """
    value = check_label_value(value)
    if value_fits(labels, value):
        return labels
    if not _fits(labels, np.uint16):
        raise LabelValueError(f"a {labels.dtype} label map cannot be widened to uint16 to hold label {value}")
    return np.ascontiguousarray(labels, dtype=np.uint16)


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
    """What one editing operation changed: flat C-order indices, old and new values in the map's dtype.

    Parameters
    ----------
    indices : np.ndarray of int32 or int64, shape (N,)
        Flat C-order indices of the changed voxels (see `index_dtype`).
    old, new : np.ndarray of the label map's dtype (uint8 or uint16), shape (N,)
        Label values before and after the operation.
    what : str
        What the user did, a template naming the label with `LABEL` ("Box fill {label} on axial 1"); the
        undo/redo lists show it through `describe`, with the page's label names.
    shape : tuple of int, optional
        Shape of the label map the edit was made on; when set, `undo`/`redo` refuse other shapes.
    widened_from : numpy.dtype, optional
        The map's dtype before the edit when the edit had to widen it (uint8 -> uint16 to hold a
        label above 255, see `apply_widening`); None when the dtype did not change.
    label : int, optional
        The label the edit is about (named in `what`); None for edits about no one label.
    """

    indices: np.ndarray
    old: np.ndarray
    new: np.ndarray
    what: str
    shape: tuple[int, ...] = field(default=())
    widened_from: np.dtype | None = None
    label: int | None = None

    @property
    def description(self) -> str:
        """What the user did, with labels named by value ("Box fill label 2 on axial 1")."""
        return self.describe()

    def describe(self, names: Mapping[int, str] | None = None) -> str:
        """What the user did, with the label named from `names` ("Box fill posterior on axial 1")."""
        return wording(self.what, self.label, names)

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

    def widened(self, from_dtype: Any) -> Edit:
        """Return this edit marked as having widened the label map from `from_dtype`.

        Parameters
        ----------
        from_dtype : numpy dtype or type
            The map's dtype before the edit (usually uint8).

        Returns
        -------
        Edit
            A copy with ``widened_from`` set; the value arrays are shared, not copied.
        """
        return replace(self, widened_from=np.dtype(from_dtype))

    def _check_shape(self, labels: np.ndarray) -> None:
        if self.shape and tuple(labels.shape) != tuple(self.shape):
            raise ValueError(f"edit was made on shape {self.shape}, not {labels.shape}")

    def _write(self, labels: np.ndarray, values: np.ndarray) -> None:
        self._check_shape(labels)
        if not _fits(values, labels.dtype):  # numpy would wrap 1002 to 234 silently
            raise ValueError(f"edit values up to {int(values.max())} do not fit a {labels.dtype} label map")
        if labels.flags.c_contiguous:
            labels.reshape(-1)[self.indices] = values
        else:
            labels.flat[self.indices] = values

    def undo(self, labels: np.ndarray) -> np.ndarray:
        """Put the old values back into `labels`, in place, and return the map to use from now on.

        Parameters
        ----------
        labels : np.ndarray of uint8 or uint16, shape `shape`
            The label map the edit was made on (or one holding the same values in a wider dtype).

        Returns
        -------
        np.ndarray, shape `shape`
            `labels` itself; but when the edit widened the map (``widened_from`` set) and the values
            now fit the earlier dtype again, a new array of that dtype (`labels` holds the same values).

        Raises
        ------
        ValueError
            When the edit records a shape and `labels` has another, or `labels`' dtype cannot hold
            the old values.
        """
        self._write(labels, self.old)
        if self.widened_from is not None and labels.dtype != self.widened_from and _fits(labels, self.widened_from):
            return labels.astype(self.widened_from)
        return labels

    def redo(self, labels: np.ndarray) -> np.ndarray:
        """Write the new values into `labels` again and return the map to use from now on.

        Parameters
        ----------
        labels : np.ndarray of uint8 or uint16, shape `shape`
            The label map as it was before the edit.

        Returns
        -------
        np.ndarray, shape `shape`
            `labels` itself, changed in place; but when the edit widened the map and `labels` cannot
            hold the new values, a new array of the new values' dtype (`labels` is then unchanged).

        Raises
        ------
        ValueError
            When the edit records a shape and `labels` has another, or `labels`' dtype cannot hold
            the new values and the edit did not widen the map.
        """
        self._check_shape(labels)
        if self.widened_from is not None and not _fits(self.new, labels.dtype):
            labels = labels.astype(self.new.dtype)
        self._write(labels, self.new)
        return labels


def empty_edit(labels: np.ndarray, description: str, label: int | None = None) -> Edit:
    """Return an `Edit` that changed nothing, for an operation that turned out to be a no-op.

    Parameters
    ----------
    labels : np.ndarray
        The label map; only its shape and dtype are used.
    description : str
        What the user did (a template, see `Edit.what`).
    label : int, optional
        The label it is about.

    Returns
    -------
    Edit
        With empty index (`index_dtype` of the shape) and value arrays of `labels`' dtype;
        ``is_empty`` is True.
    """
    return Edit(
        np.zeros(0, index_dtype(labels.shape)), np.zeros(0, labels.dtype), np.zeros(0, labels.dtype), description,
        tuple(labels.shape), label=label,
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


def diff_region(labels: np.ndarray, before: np.ndarray, region: tuple[slice, ...], description: str,
                label: int | None = None) -> Edit:
    """Build the `Edit` of an operation from a copy `before` of labels[region] and the array now.

    Only the region is compared, so an edit on one slice of a large volume stays cheap.

    Parameters
    ----------
    labels : np.ndarray of uint8 or uint16, shape (X, Y, Z)
        The label map after the operation.
    before : np.ndarray, shape of ``labels[region]``
        Copy of ``labels[region]`` taken before the operation (normally of `labels`' dtype).
    region : tuple of slice
        One slice per axis with explicit integer starts (or None for 0) and step 1.
    description : str
        What the user did (a template, see `Edit.what`).
    label : int, optional
        The label it is about.

    Returns
    -------
    Edit
        Flat C-order indices of the changed voxels (ascending) in the whole array, with old and new
        values in `labels`' dtype; an empty edit when nothing changed.

    Raises
    ------
    ValueError
        When an old value in `before` does not fit `labels`' dtype (it could not be restored).

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
        return empty_edit(labels, description, label)
    coords = tuple(c + (s.start or 0) for c, s in zip(changed, region))
    flat = np.ravel_multi_index(coords, labels.shape).astype(index_dtype(labels.shape))
    old = before[changed]
    if old.dtype != labels.dtype:
        if not _fits(old, labels.dtype):
            raise ValueError(f"old label values up to {int(old.max())} do not fit a {labels.dtype} label map")
        old = old.astype(labels.dtype)
    return Edit(flat, old, after[changed], description, tuple(labels.shape), label=label)


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
    labels : np.ndarray of uint8 or uint16, shape (X, Y, Z)
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


def apply_widening(
    labels: np.ndarray, value: int, fn: Callable[..., Edit], *args: Any, **kwargs: Any
) -> tuple[np.ndarray, Edit]:
    """Run an operation that writes label `value`, widening the map to uint16 first when it must.

    ``fn(labels, *args, **kwargs)`` is called on `labels` itself when `value` fits its dtype, else
    on a uint16 copy (see `widen_for`); the returned edit then records the earlier dtype
    (``widened_from``) so that `EditHistory.undo_labels` gives the narrow map back exactly.

    Parameters
    ----------
    labels : np.ndarray of uint8 or uint16, shape (X, Y, Z)
        Label map; modified in place when no widening is needed, else left unchanged.
    value : int
        The label `fn` writes, 0..65535 (also pass it in `args`/`kwargs` as `fn` expects).
    fn : callable
        An operation of `segloop.editing.operations` (or alike) returning an `Edit`.
    *args, **kwargs
        Passed to `fn` after the label map.

    Returns
    -------
    labels : np.ndarray, shape (X, Y, Z)
        The map to use from now on: `labels` itself, or the new uint16 array when `fn` changed
        something there (an operation that changed nothing leaves the caller's narrow map in use).
    edit : Edit
        What `fn` changed, with ``widened_from`` set when the map was widened.

    Raises
    ------
    LabelValueError
        When `value` is outside 0..65535 or not a whole number; anything `fn` raises.

    Examples
    --------
    >>> import numpy as np
    >>> from segloop.editing.operations import paint_box
    >>> labels = np.zeros((3, 4, 5), np.uint8)
    >>> wide, edit = apply_widening(labels, 1002, paint_box, "axial", 1, (0, 1), (0, 2), 1002)
    >>> wide.dtype, int(wide.max()), str(edit.widened_from), int(labels.max())
    (dtype('uint16'), 1002, 'uint8', 0)
    """
    target = widen_for(labels, value)
    edit = fn(target, *args, **kwargs)
    if target is labels or edit.is_empty:
        return labels, edit
    return target, edit.widened(labels.dtype)


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

    A label above 255 widens a uint8 map; `undo_labels` gives the uint8 map back:

    >>> from segloop.editing.operations import paint_box
    >>> labels, edit = apply_widening(labels, 1002, paint_box, "axial", 1, (0, 1), (0, 2), 1002)
    >>> history.push(edit), labels.dtype
    (True, dtype('uint16'))
    >>> labels, _ = history.undo_labels(labels)
    >>> labels.dtype, int(labels.sum())
    (dtype('uint8'), 0)
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
    def undo_edits(self) -> list[Edit]:
        """The edits that can be undone, oldest first (`Edit.describe` names them for a page)."""
        return list(self._undo)

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

        An edit that widened the map (``Edit.widened_from``) leaves `labels` in its wider dtype,
        with exactly the old values; use `undo_labels` to get the narrow map back too.

        Parameters
        ----------
        labels : np.ndarray of uint8 or uint16, shape (X, Y, Z)
            The label map the edits were made on.

        Returns
        -------
        Edit or None
            The edit undone; None when there is nothing to undo.

        Raises
        ------
        ValueError
            When `labels` does not have the shape the edit was made on, or its dtype cannot hold the
            old values (the edit is then lost from both stacks).
        """
        return self.undo_labels(labels)[1]

    def undo_labels(self, labels: np.ndarray) -> tuple[np.ndarray, Edit | None]:
        """Revert the most recent edit as `undo` does, and return the label map to use from now on.

        Parameters
        ----------
        labels : np.ndarray of uint8 or uint16, shape (X, Y, Z)
            The label map the edits were made on; changed in place.

        Returns
        -------
        labels : np.ndarray, shape (X, Y, Z)
            `labels` itself; or, when the undone edit had widened the map, a new array of the
            map's earlier dtype holding the same values.
        edit : Edit or None
            The edit undone; None when there is nothing to undo.

        Raises
        ------
        ValueError
            As `undo`.
        """
        if not self._undo:
            return labels, None
        edit = self._undo.pop()
        labels = edit.undo(labels)
        self._redo.append(edit)
        return labels, edit

    def redo(self, labels: np.ndarray) -> Edit | None:
        """Re-apply the most recently undone edit to `labels`, in place, and move it back to the undo stack.

        Parameters
        ----------
        labels : np.ndarray of uint8 or uint16, shape (X, Y, Z)
            The label map the edits were made on.

        Returns
        -------
        Edit or None
            The edit redone; None when there is nothing to redo.

        Raises
        ------
        ValueError
            When `labels` does not have the shape the edit was made on (the edit is then lost from
            both stacks), or when the edit widened the map and `labels` is still of the narrow
            dtype, which cannot change in place (both stacks are then left as they were; use
            `redo_labels`).
        """
        upcoming = self._redo[-1] if self._redo else None
        if upcoming is not None and upcoming.widened_from is not None and not _fits(upcoming.new, labels.dtype):
            raise ValueError(f"the next edit widens the {labels.dtype} label map, which cannot happen in place; use redo_labels")
        return self.redo_labels(labels)[1]

    def redo_labels(self, labels: np.ndarray) -> tuple[np.ndarray, Edit | None]:
        """Re-apply the most recently undone edit and return the label map to use from now on.

        Parameters
        ----------
        labels : np.ndarray of uint8 or uint16, shape (X, Y, Z)
            The label map the edits were made on.

        Returns
        -------
        labels : np.ndarray, shape (X, Y, Z)
            `labels` itself, changed in place; or, when the redone edit widens the map and `labels`
            cannot hold its values, a new uint16 array (`labels` is then unchanged).
        edit : Edit or None
            The edit redone; None when there is nothing to redo.

        Raises
        ------
        ValueError
            When `labels` does not have the shape the edit was made on (the edit is then lost from
            both stacks).
        """
        if not self._redo:
            return labels, None
        edit = self._redo.pop()
        labels = edit.redo(labels)
        self._undo.append(edit)
        return labels, edit

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
