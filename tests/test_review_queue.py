"""Review queue orderings over stored prediction summaries."""

from __future__ import annotations

import numpy as np
import pytest

from segloop.store.database import Datastore
from segloop.store.review_queue import QueueItem, order_cases, review_queue

ITEMS = [
    QueueItem(1, "a", "predicted", 0.10, 500),
    QueueItem(2, "b", "predicted", 0.40, 300),
    QueueItem(3, "c", "new", None, None),
    QueueItem(4, "d", "approved", 0.90, 400),
    QueueItem(5, "e", "corrected", 0.25, 0),
    QueueItem(6, "f", "predicted", 0.30, 20),
]


def test_uncertainty_puts_least_certain_first_and_unpredicted_last():
    assert [i.name for i in order_cases(ITEMS, "uncertainty")] == ["b", "f", "e", "a", "c"]
    assert [i.name for i in order_cases(ITEMS, "uncertainty", exclude_statuses=())][0] == "d"


def test_random_is_seeded_and_a_permutation():
    one = [i.name for i in order_cases(ITEMS, "random", seed=3)]
    assert one == [i.name for i in order_cases(list(reversed(ITEMS)), "random", seed=3)]
    assert sorted(one) == ["a", "b", "c", "e", "f"]
    orders = {tuple(i.name for i in order_cases(ITEMS, "random", seed=s)) for s in range(10)}
    assert len(orders) > 1


def test_foreground_random_skips_scans_with_little_predicted_foreground():
    got = order_cases(ITEMS, "foreground-random", seed=1, min_foreground=100)
    assert sorted(i.name for i in got) == ["a", "b"]
    with pytest.raises(ValueError, match="unknown review order"):
        order_cases(ITEMS, "alphabetical")


def test_queue_from_store_uses_active_model_predictions_and_statuses(tmp_path):
    store = Datastore(workspace=tmp_path)
    with store.write() as tx:
        ids = {n: tx.upsert_scan(n, f"/x/{n}.nii.gz", "imported", f"content-{n}") for n in ("s1", "s2", "s3")}
        old = tx.insert_model("m", 1, "/x/1.onnx", None, None, None, {})
        new = tx.insert_model("m", 2, "/x/2.onnx", None, None, old, {})
        tx.set_active_model(new, "activate")
    store.record_prediction(ids["s1"], new, mean_uncertainty=0.2, foreground_voxels=50)
    store.record_prediction(ids["s2"], new, mean_uncertainty=0.6, foreground_voxels=80)
    store.record_prediction(ids["s3"], old, mean_uncertainty=0.9, foreground_voxels=80)  # stale model
    q = review_queue(store, "uncertainty")
    assert [(i.name, i.status) for i in q] == [("s2", "predicted"), ("s1", "predicted"), ("s3", "predicted")]
    assert q[2].mean_uncertainty is None
    assert [i.name for i in review_queue(store, "uncertainty", model_id=old)][0] == "s3"
    assert np.isclose(q[0].mean_uncertainty, 0.6)
