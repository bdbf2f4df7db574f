"""Which scan to label next: active-learning orderings over the stored prediction summaries.

Strategies:
- 'uncertainty': highest mean uncertainty over the predicted foreground first (the model is least
  sure there, so a correction teaches it most); scans without a prediction go last.
- 'random': a seeded shuffle (the unbiased baseline active learning is compared against).
- 'foreground-random': a seeded shuffle of the scans whose prediction has at least
  `min_foreground` foreground voxels (skips scans where the model found nothing to review).
Approved scans are left out by default: they need no more work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segloop.store.database import Datastore
from segloop.store.label_versions import scan_statuses
from segloop.store.vocabulary import CaseStatus

STRATEGIES = ("uncertainty", "random", "foreground-random")


@dataclass(frozen=True)
class QueueItem:
    """One scan as the review queue sees it.

    Parameters
    ----------
    scan_id : int
        Row id of the scan.
    name : str
        The scan's display name (for people and for sorting; the scan is `scan_id`).
    status : str
        A `CaseStatus` value: "new", "predicted", "corrected" or "approved".
    mean_uncertainty : float, optional
        Mean normalised entropy (0..1) over the foreground of the model's prediction; None without one.
    foreground_voxels : int, optional
        Voxels the prediction labels as foreground; None without a prediction.
    """

    scan_id: int
    name: str
    status: str
    mean_uncertainty: float | None = None
    foreground_voxels: int | None = None


def order_cases(items: list[QueueItem], strategy: str = "uncertainty", seed: int = 0, min_foreground: int = 1,
                exclude_statuses: tuple[str, ...] = (CaseStatus.APPROVED,)) -> list[QueueItem]:
    """Return the items in the order to review them (a pure function: same input and seed, same order).

    Parameters
    ----------
    items : list of QueueItem
        The scans to order, in any order (they are sorted by name first, so input order never matters).
    strategy : {"uncertainty", "random", "foreground-random"}, optional
        See the module docstring.
    seed : int, optional
        Seed of the shuffle of the random strategies (unused by "uncertainty").
    min_foreground : int, optional
        "foreground-random" only: leave out scans with fewer predicted foreground voxels (or none).
    exclude_statuses : tuple of str, optional
        Statuses to leave out; approved scans by default.

    Returns
    -------
    list of QueueItem
        A new list. "uncertainty": highest `mean_uncertainty` first (ties by name), then the scans
        without a prediction by name.

    Raises
    ------
    ValueError
        When `strategy` is not one of `STRATEGIES`.

    Examples
    --------
    >>> items = [QueueItem(1, "a", "predicted", 0.2, 10), QueueItem(2, "b", "corrected", 0.7, 5),
    ...          QueueItem(3, "c", "approved", 0.9, 3), QueueItem(4, "d", "new")]
    >>> [i.scan_id for i in order_cases(items)]
    [2, 1, 4]
    >>> [i.scan_id for i in order_cases(items, "foreground-random", min_foreground=6)]
    [1]
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown review order {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    pool = sorted((i for i in items if i.status not in exclude_statuses), key=lambda i: (i.name, i.scan_id))
    if strategy == "uncertainty":
        scored = [i for i in pool if i.mean_uncertainty is not None]
        rest = [i for i in pool if i.mean_uncertainty is None]
        return sorted(scored, key=lambda i: -i.mean_uncertainty) + rest
    if strategy == "foreground-random":
        pool = [i for i in pool if (i.foreground_voxels or 0) >= min_foreground]
    perm = np.random.default_rng(seed).permutation(len(pool))
    return [pool[k] for k in perm]


def queue_items(store: Datastore, model_id: int | None = None) -> list[QueueItem]:
    """List every scan with its status and the prediction summary of `model_id` (default: the active model).

    Parameters
    ----------
    store : Datastore
        The workspace's database (read only).
    model_id : int, optional
        Model whose predictions give the uncertainty and foreground numbers; None: the active model
        (no numbers at all when no model is active).

    Returns
    -------
    list of QueueItem
        One per registered scan, in name order, unfiltered; the numbers are None for scans that model
        has not predicted.
    """
    if model_id is None:
        active = store.active_model()
        model_id = active.id if active else None
    preds = {p.scan_id: p for p in store.predictions(model_id)} if model_id is not None else {}
    statuses = scan_statuses(store)
    return [QueueItem(s.id, s.name, statuses.get(s.id, "new"),
                      preds[s.id].mean_uncertainty if s.id in preds else None,
                      preds[s.id].foreground_voxels if s.id in preds else None)
            for s in store.scans()]


def review_queue(store: Datastore, strategy: str = "uncertainty", seed: int = 0, min_foreground: int = 1,
                 model_id: int | None = None, exclude_statuses: tuple[str, ...] = (CaseStatus.APPROVED,)) -> list[QueueItem]:
    """Return the store's scans in the order to review them: `queue_items` ordered by `order_cases`.

    Parameters
    ----------
    store : Datastore
        The workspace's database (read only).
    strategy, seed, min_foreground, exclude_statuses
        As in `order_cases`.
    model_id : int, optional
        As in `queue_items`: whose predictions rank the scans (default: the active model).

    Returns
    -------
    list of QueueItem
        The scans to review, first one first.

    Raises
    ------
    ValueError
        When `strategy` is unknown.
    """
    return order_cases(queue_items(store, model_id), strategy, seed, min_foreground, exclude_statuses)
