"""Model versions are compared only on the same evaluation: the same cases, protocol and code path."""

from __future__ import annotations

from segloop.model.card import Evaluation, Metrics
from segloop.model.evaluations import engine_name, evaluation_key, group_by_evaluation

SPLIT = dict(cases=[f"c{i}" for i in range(10)], protocol="validation split of the training run (it also chose the epoch)",
             evaluated_with="ONNX Runtime, segloop.inference.predict")


def _run(n: int, cases: list[str]) -> dict:
    return dict(cases=cases, protocol=f"fixed validation set of fine-tuning run #{n} (never used to pick weights)",
                evaluated_with="PyTorch, whole volumes, the training code's evaluation")


def _ev(dice: float, **where) -> Evaluation:
    return Evaluation(dice={"anterior": dice, "posterior": dice - 0.01}, **where)


def test_shipped_and_fine_tuned_models_are_not_compared_across_evaluations():
    run1 = _run(1, SPLIT["cases"])  # the same cases as the shipped split, but another protocol and code path
    metrics = {1: Metrics(validation=_ev(0.89, **SPLIT)),
               2: Metrics(validation=_ev(0.84, **run1), parent_validation=_ev(0.80, **run1))}
    groups = group_by_evaluation(metrics, {1: None, 2: 1})
    assert [g.versions for g in groups] == [[1, 2], [1]]
    fine, own = groups
    assert fine.scores[1].dice["anterior"] == 0.80 and fine.scores[2].dice["anterior"] == 0.84
    assert fine.sources == {1: "the card of v2", 2: "its own card"}
    assert own.scores[1].dice["anterior"] == 0.89  # the shipped model's own figure stays on its own evaluation
    assert fine.title == "fixed validation set of fine-tuning run #1 (never used to pick weights) · 10 cases · PyTorch"
    assert own.title == "validation split of the training run (it also chose the epoch) · 10 cases · ONNX Runtime"
    assert fine.key != own.key


def test_same_cases_in_another_order_are_the_same_evaluation_and_own_figures_win():
    a = _run(3, ["x", "y", "z"])
    b = _run(3, ["z", "x", "y"])
    metrics = {2: Metrics(validation=_ev(0.7, **a)),
               3: Metrics(validation=_ev(0.8, **b), parent_validation=_ev(0.5, **b))}
    (group,) = group_by_evaluation(metrics, {3: 2})
    assert group.versions == [2, 3]
    assert group.scores[2].dice["anterior"] == 0.7  # v2's own card, not what v3's card says about it
    assert group.cases == ["x", "y", "z"]
    assert evaluation_key(_ev(0.1, **a)) == evaluation_key(_ev(0.9, **b))


def test_siblings_from_two_runs_and_evaluations_without_figures():
    metrics = {1: Metrics(validation=_ev(0.89, **SPLIT)),
               2: Metrics(validation=_ev(0.84, **_run(1, ["a", "b"])), parent_validation=_ev(0.8, **_run(1, ["a", "b"]))),
               3: Metrics(validation=_ev(0.86, **_run(2, ["c"])), parent_validation=_ev(0.81, **_run(2, ["c"]))),
               4: Metrics(validation=Evaluation(cases=["d"], protocol="empty")),  # no Dice: nothing to show
               5: Metrics()}
    groups = group_by_evaluation(metrics, {2: 1, 3: 1, 4: 3, 5: 4})
    # most versions first; among equals the evaluation with the newest version
    assert [(g.versions, g.protocol.split(" (")[0]) for g in groups] == [
        ([1, 3], "fixed validation set of fine-tuning run #2"),
        ([1, 2], "fixed validation set of fine-tuning run #1"),
        ([1], "validation split of the training run")]
    assert all(4 not in g.scores and 5 not in g.scores for g in groups)
    # a child's parent figures without a known parent are left out
    assert [g.versions for g in group_by_evaluation(metrics, {})] == [[3], [2], [1]]
    assert group_by_evaluation({}, {}) == []


def test_titles_are_unique_and_never_name_internal_code():
    one = dict(protocol="held-out set", evaluated_with="segloop.model.inference.predict")
    metrics = {1: Metrics(validation=_ev(0.8, cases=["a", "b"], **one)),
               2: Metrics(validation=_ev(0.7, cases=["c", "d"], **one))}
    titles = [g.title for g in group_by_evaluation(metrics, {})]
    assert titles == ["held-out set · 2 cases", "held-out set · 2 cases · case set 2"]
    assert engine_name("ONNX Runtime, segloop.model.inference.predict, with the card's processing") == "ONNX Runtime"
    assert engine_name("segloop.model.inference.predict") == ""
    unnamed = group_by_evaluation({1: Metrics(validation=_ev(0.8, cases=["a"]))}, {})
    assert unnamed[0].title == "unnamed evaluation · 1 case"
