"""Fair comparisons of model versions: scores are only set side by side when they come from the same evaluation.

A model card records the model's scores on one set of cases (`card.Metrics.validation`) and, for a
fine-tuned model, its parent's scores on the same cases (`parent_validation`). Two scores are
comparable only when they were measured on the same cases, under the same protocol and by the same
code path: the shipped model's Dice on the validation split that also chose its epoch and a fine-tuned
model's Dice on its run's fixed validation set are not. `group_by_evaluation` therefore groups the
registry's scores by evaluation (cases, protocol, code path), and a page shows one group at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from segloop.model.card import Evaluation, Metrics


@dataclass
class EvaluationGroup:
    """The scores of several model versions on one evaluation (the same cases, protocol and code path).

    Attributes
    ----------
    key : str
        Stable identifier of the evaluation (12 hex digits of a hash of cases, protocol and code path).
    protocol : str
        How the cases relate to the models (`Evaluation.protocol`).
    cases : list of str
        The cases scored, sorted.
    evaluated_with : str
        The code path that produced the numbers, as the card records it.
    title : str
        What the user reads: protocol, number of cases and scoring engine (never internal module names).
    scores : dict of int to Evaluation
        Model version -> its scores on this evaluation, ascending versions.
    sources : dict of int to str
        Model version -> where the figures come from: "its own card", or "the card of v<N>" for a
        parent scored by its fine-tuned child.
    """

    key: str
    protocol: str
    cases: list[str]
    evaluated_with: str
    title: str = ""
    scores: dict[int, Evaluation] = field(default_factory=dict)
    sources: dict[int, str] = field(default_factory=dict)

    @property
    def versions(self) -> list[int]:
        """Model versions with figures on this evaluation, ascending.

        Returns
        -------
        list of int

        Examples
        --------
        >>> EvaluationGroup("k", "p", [], "", scores={3: Evaluation(), 1: Evaluation()}).versions
        [1, 3]
        """
        return sorted(self.scores)


def engine_name(evaluated_with: str) -> str:
    """Return the scoring engine of an `Evaluation.evaluated_with` text, without internal module names.

    Parameters
    ----------
    evaluated_with : str
        E.g. "ONNX Runtime, segloop.model.inference.predict, with the card's processing".

    Returns
    -------
    str
        The first comma-separated part, or "" when that part is a dotted module name or empty.

    Examples
    --------
    >>> engine_name("ONNX Runtime, segloop.inference.predict"), engine_name("segloop.x.y"), engine_name("")
    ('ONNX Runtime', '', '')
    """
    head = (evaluated_with or "").split(",")[0].strip()
    return "" if not head or ("." in head and " " not in head) else head


def evaluation_key(ev: Evaluation) -> str:
    """Return the identifier of the evaluation `ev` was measured on: its cases (in any order), protocol and code path.

    Parameters
    ----------
    ev : Evaluation
        Scores from a model card.

    Returns
    -------
    str
        12 hex digits; equal for two evaluations exactly when their case sets, protocols and
        ``evaluated_with`` texts are equal.

    Examples
    --------
    >>> a = Evaluation(cases=["b", "a"], protocol="fixed set", evaluated_with="PyTorch")
    >>> b = Evaluation(cases=["a", "b"], protocol="fixed set", evaluated_with="PyTorch")
    >>> evaluation_key(a) == evaluation_key(b), evaluation_key(a) == evaluation_key(Evaluation(cases=["a"]))
    (True, False)
    """
    text = "\x1f".join(sorted(set(ev.cases))) + "\x1e" + ev.protocol + "\x1e" + ev.evaluated_with
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def group_by_evaluation(metrics: Mapping[int, Metrics], parents: Mapping[int, int | None]) -> list[EvaluationGroup]:
    """Group the registry's scores by evaluation, so only figures measured the same way are compared.

    Parameters
    ----------
    metrics : mapping of int to Metrics
        Model version -> the metrics of its card (`segloop.store.registry.model_metrics`).
    parents : mapping of int to int or None
        Model version -> the version it was fine-tuned from (None or missing for none). A card's
        ``parent_validation`` counts as that parent's figures; without a known parent it is left out.

    Returns
    -------
    list of EvaluationGroup
        Evaluations with at least one version's Dice, the most useful first: most versions, then the
        newest version. A version's own ``validation`` wins over figures another card gives it on the
        same evaluation. Titles are unique: two evaluations that would read the same get " · case set N".

    Examples
    --------
    >>> own = Evaluation(cases=["a", "b"], dice={"anterior": 0.9}, protocol="validation split")
    >>> run = dict(cases=["c"], protocol="fixed set of run #1", evaluated_with="PyTorch, whole volumes")
    >>> m = {1: Metrics(validation=own),
    ...      2: Metrics(validation=Evaluation(dice={"anterior": 0.8}, **run),
    ...                 parent_validation=Evaluation(dice={"anterior": 0.7}, **run))}
    >>> groups = group_by_evaluation(m, {2: 1})
    >>> [(g.title, g.versions) for g in groups]
    [('fixed set of run #1 · 1 case · PyTorch', [1, 2]), ('validation split · 2 cases', [1])]
    >>> groups[0].sources
    {1: 'the card of v2', 2: 'its own card'}
    """
    groups: dict[str, EvaluationGroup] = {}

    def add(version: int, ev: Evaluation | None, source: str) -> None:
        if ev is None or not ev.dice:
            return
        key = evaluation_key(ev)
        group = groups.setdefault(key, EvaluationGroup(key, ev.protocol, sorted(set(ev.cases)), ev.evaluated_with))
        if version not in group.scores:
            group.scores[version] = ev
            group.sources[version] = source

    for version in sorted(metrics):  # own figures first: they win over what a child's card says
        add(version, metrics[version].validation, "its own card")
    for version in sorted(metrics):
        parent = parents.get(version)
        if parent is not None:
            add(parent, metrics[version].parent_validation, f"the card of v{version}")
    out = sorted(groups.values(), key=lambda g: (-len(g.scores), -max(g.scores)))
    for g in out:
        g.scores = dict(sorted(g.scores.items()))
        g.sources = dict(sorted(g.sources.items()))
        n = len(g.cases)
        parts = [g.protocol or "unnamed evaluation", f"{n} case" + ("" if n == 1 else "s")]
        if engine := engine_name(g.evaluated_with):
            parts.append(engine)
        g.title = " · ".join(parts)
    seen: dict[str, int] = {}
    for g in out:  # same protocol, count and engine but other cases or code path: say they differ
        seen[g.title] = seen.get(g.title, 0) + 1
        if seen[g.title] > 1:
            g.title += f" · case set {seen[g.title]}"
    return out
