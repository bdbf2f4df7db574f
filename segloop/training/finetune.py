"""The fine-tuning plan: which cases train, which validate, with what settings.

One function, `plan_finetune`, decides it for the Retrain page, `python -m segloop finetune` and
`bench/feedback_loop.py`, so the three can never disagree:

- training cases: the newest corrected or approved label version of the chosen scans, plus
  optionally N original training cases of the base model (its card's `split.train`, found in the data
  folder), sampled with a seeded generator so a plan can be repeated;
- validation: the base model's own validation split (card `split.validation`) found in the data
  folder, unless the caller gives a fixed set; a case trained on (same name or same image file) is
  never used to validate;
- threads: half the machine's cores, so a web app on the same machine stays responsive.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segloop.data.folders import list_cases
from segloop.data.splits import Case
from segloop.errors import ModelError, SegLoopError
from segloop.model.card import load_card
from segloop.store.database import Datastore, LabelVersion, ModelRecord
from segloop.store.scan_links import is_short_id
from segloop.store.vocabulary import HUMAN_KINDS

DEFAULT_EPOCHS = 20
DEFAULT_LR = 2e-4
DEFAULT_BATCH_SIZE = 4
#: Original cases mixed in against forgetting, when the user asks for them.
DEFAULT_ORIGINAL = 20


@dataclass
class FinetunePlan:
    """A fine-tuning run, decided but not started; `params` is what `jobs.start_training` takes.

    Parameters
    ----------
    base : ModelRecord
        The model to fine-tune.
    corrected : dict of int to LabelVersion
        Scan id -> the corrected or approved label version trained on.
    original : list of Case
        The base model's own training cases mixed in (against forgetting).
    validation : list of Case
        The fixed validation set: the parent and the new model are both scored on it.
    missing_validation : list of str
        Validation case names of the base card not found in the data folder.
    params : dict
        Settings for `segloop.training.jobs.start_training`: ``base_model_id``, ``label_version_ids``,
        ``extra_cases`` and ``val_cases`` (lists of {"name", "image", "label"}), ``epochs``, ``lr``,
        ``batch_size``, ``augment``, ``val_every``, ``threads`` and ``seed``.
    """

    base: ModelRecord
    corrected: dict[int, LabelVersion]  # scan id -> the label version trained on
    original: list[Case]  # the base model's training cases mixed in
    validation: list[Case]  # fixed validation set: parent and new model are both scored on it
    missing_validation: list[str] = field(default_factory=list)  # card validation cases not in the data folder
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_training_cases(self) -> int:
        """Number of training cases: corrected plus original.

        Returns
        -------
        int
        """
        return len(self.corrected) + len(self.original)

    def problems(self) -> list[str]:
        """List why this plan cannot start (empty when it can).

        Returns
        -------
        list of str
            Plain-English problems: no training case at all, or no validation case.
        """
        out = []
        if not self.n_training_cases:
            out.append("choose at least one corrected case, or add original training data")
        if not self.validation:
            out.append(f"no validation cases: model v{self.base.version}'s card lists no validation split found "
                       "in the data folder (set SEGLOOP_DATA_DIR, or --data, to its training data)")
        return out


def default_threads() -> int:
    """Return torch threads for a background run: half the cores, so the app on the same machine keeps up.

    Returns
    -------
    int
        ``os.cpu_count() // 2``, at least 1 (1 when the count is unknown).
    """
    return max(1, (os.cpu_count() or 2) // 2)


def corrected_versions(store: Datastore) -> dict[int, LabelVersion]:
    """Return the newest corrected or approved label version of every scan that has one, by scan id.

    Parameters
    ----------
    store : Datastore
        The workspace's database.

    Returns
    -------
    dict of int to LabelVersion
        Scan id -> its highest-numbered 'correction' or 'approved' version ('reference' and 'model'
        versions do not count).
    """
    return dict(store.latest_versions(HUMAN_KINDS))


def resolve_scans(store: Datastore, refs: list[int | str]) -> list[int]:
    """Scan ids from what a user typed: ids (42, "42", "#42"), names or short content ids (the ``scan=`` of an
    app link, 6 hex digits or more), each of which must name exactly one scan.

    Raises
    ------
    SegLoopError
        For an unknown id or name, or a name that several scans share (their ids are listed).
    """
    ids = []
    for ref in refs:
        text = str(ref).lstrip("#")
        if text.isdigit():
            ids.append(store.scan(int(text)).id)
            continue
        found = store.scans_named(str(ref))
        if not found and is_short_id(text.lower()) and len(text) >= 6:  # a short content id, as app links carry
            found = store.scans_with_id_prefix(text)
        if len(found) != 1:
            raise SegLoopError(f"no scan is named {ref!r}" if not found else
                               f"{len(found)} scans are named {ref!r} (ids {', '.join(str(s.id) for s in found)}); "
                               "give the id instead")
        ids.append(found[0].id)
    return ids


def labelled_folder_cases(folder: str | Path | None) -> dict[str, Case]:
    """Return the labelled cases of a data folder (any layout `segloop.data.folders` reads), by name.

    Parameters
    ----------
    folder : str or pathlib.Path or None
        The data folder; None gives ``{}``.

    Returns
    -------
    dict of str to Case
        Case name -> Case with absolute image and label paths; cases without a label map are left out.

    Raises
    ------
    SegLoopError
        When `folder` is given but is not a folder (see `segloop.data.folders.list_cases`).
    """
    if folder is None:
        return {}
    return {c.name: Case(c.name, c.image_path, c.label_path) for c in list_cases(folder) if c.label_path}


def base_split(model: ModelRecord) -> dict[str, list[str]]:
    """Return the train/validation case names of a registered model's card ({} when it has no card).

    Parameters
    ----------
    model : ModelRecord
        A registered model.

    Returns
    -------
    dict
        ``{"train": [names], "validation": [names]}`` from the card's ``split`` (lists may be empty);
        ``{}`` when the model has no card file.

    Raises
    ------
    ModelError
        When the card file exists but is invalid.
    """
    if not model.card_path or not Path(model.card_path).is_file():
        return {}
    split = load_card(model.card_path).split or {}
    return {"train": list(split.get("train") or []), "validation": list(split.get("validation") or [])}


def _same_file(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def plan_finetune(store: Datastore, base: ModelRecord | None = None, *, cases: list[int | str] | None = None,
                  data_dir: str | Path | None = None, n_original: int = 0, validation: list[Case] | None = None,
                  epochs: int = DEFAULT_EPOCHS, lr: float = DEFAULT_LR, batch_size: int = DEFAULT_BATCH_SIZE,
                  augment: bool = True, val_every: int | None = None, threads: int | None = None,
                  seed: int = 0) -> FinetunePlan:
    """Decide a fine-tuning run of `base` (default: the active model).

    Parameters
    ----------
    store : Datastore
        The workspace's database (read only).
    base : ModelRecord, optional
        The model to fine-tune; None: the active model.
    cases : list of int or str, optional
        Scans (ids, or names that name one scan each) whose newest corrected/approved version to train
        on; None: all of them.
    data_dir : path, optional
        Folder holding the base model's original training and validation cases.
    n_original : int
        How many of the base model's training cases to mix in (0: none). They are drawn with a
        generator seeded by `seed` from the card's ``split.train`` names found in `data_dir` (every
        labelled case there when the card lists none), never from its validation names.
    validation : list of Case, optional
        A fixed validation set to use instead of the base card's validation split.
    epochs, lr, batch_size, augment
        Training settings, copied into ``params``.
    val_every : int, optional
        Also score the validation set every N epochs, for the curves only (never selects weights).
    threads : int, optional
        torch threads of the job; default `default_threads()`.
    seed : int
        Seed of the original-case draw and of training.

    Returns
    -------
    FinetunePlan
        Check `problems()` before starting it. Validation cases that are also trained on (same name or
        same image file) are dropped from ``validation``.

    Raises
    ------
    ModelError
        No model is active (with `base` None), the base model has no torch checkpoint file, or its
        card is invalid.
    SegLoopError
        A chosen case has no corrected or approved version, or `data_dir` is not a folder.
    """
    if base is None:
        base = store.active_model()
        if base is None:
            raise ModelError("there is no active model to fine-tune")
    if not base.checkpoint_path or not Path(base.checkpoint_path).is_file():
        raise ModelError(f"model v{base.version} has no torch checkpoint to fine-tune from")
    available = corrected_versions(store)
    wanted = sorted(available) if cases is None else resolve_scans(store, cases)
    unknown = [store.scan(sid).name for sid in wanted if sid not in available]
    if unknown:
        raise SegLoopError(f"no corrected or approved version of: {', '.join(unknown)}")
    chosen = {sid: available[sid] for sid in wanted}
    folder = labelled_folder_cases(data_dir)
    split = base_split(base)
    pool = [n for n in (split.get("train") or sorted(folder)) if n in folder and n not in (split.get("validation") or [])]
    original: list[Case] = []
    if n_original > 0 and pool:
        picks = np.random.default_rng(seed).choice(len(pool), size=min(int(n_original), len(pool)), replace=False)
        original = [folder[pool[i]] for i in sorted(picks.tolist())]
    train_images = [store.scan(v.scan_id).image_path for v in chosen.values()] + [c.image for c in original]
    train_names = {store.scan(sid).name for sid in chosen} | {c.name for c in original}
    missing: list[str] = []
    if validation is None:
        wanted = split.get("validation") or []
        missing = [n for n in wanted if n not in folder]
        validation = [folder[n] for n in wanted if n in folder]
    validation = [c for c in validation
                  if c.name not in train_names and not any(_same_file(c.image, im) for im in train_images)]
    params = {"base_model_id": base.id, "label_version_ids": [v.id for v in chosen.values()],
              "extra_cases": [asdict(c) for c in original], "val_cases": [asdict(c) for c in validation],
              "epochs": int(epochs), "lr": float(lr), "batch_size": int(batch_size), "augment": bool(augment),
              "val_every": int(val_every) if val_every else None, "threads": int(threads or default_threads()),
              "seed": int(seed)}
    return FinetunePlan(base, chosen, original, validation, missing, params)
