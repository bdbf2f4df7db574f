"""Model cards: the JSON file beside every ONNX model that says what it is, expects and achieves.

The app and CLI read nothing about a model from code: labels, colours, input expectations,
pre/post-processing and metrics all come from the card, so any 3D segmentation model with a card
can be served and fine-tuned. This module is the only one that reads or writes a card; cards of the
first layout (schema 1: processing inside `input`, two layouts of metrics) are read through
`migrate_card_dict`.

Example
-------
>>> card = load_card("weights/hippocampus-unet-v1.card.json")      # doctest: +SKIP
>>> card.input.spacing, card.processing.test_time_augmentation     # doctest: +SKIP
((1.0, 1.0, 1.0), ['flip_left_right'])
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from segloop.errors import ModelError
from segloop.io.atomic import atomic_write_json

CARD_SUFFIX = ".card.json"
#: Layout of the cards this module writes.
CARD_SCHEMA = 2


class Normalization(StrEnum):
    """Intensity normalisation a model expects (see `segloop.model.preprocessing.normalize`).

    Members: CLIP_ZSCORE ("clip_zscore"), ZSCORE ("zscore"), NONE ("none"). Only "clip_zscore" is
    implemented by `normalize` today; the others raise ValueError there.
    """

    CLIP_ZSCORE = "clip_zscore"  # clip to the 0.5/99.5 percentiles, then z-score over the volume
    ZSCORE = "zscore"
    NONE = "none"


class Augmentation(StrEnum):
    """Test-time augmentations a card may list; their predictions are averaged.

    Members: FLIP_LEFT_RIGHT ("flip_left_right"), a mirror image along RAS axis 0.
    """

    FLIP_LEFT_RIGHT = "flip_left_right"


@dataclass
class LabelInfo:
    """One output class of the model.

    Attributes
    ----------
    value : int
        The class's value in label maps (0 is background).
    name : str
        Its name, e.g. "anterior"; evaluations are keyed by it.
    color : str
        Display colour, "#rrggbb".
    """

    value: int
    name: str
    color: str = "#ffffff"  # "#rrggbb"


@dataclass
class InputSpec:
    """What the network expects to be fed.

    Attributes
    ----------
    modality : str
        Free text, e.g. "MRI T1".
    channels : int
        Image channels the network takes (SegLoop feeds 1).
    spacing : tuple of 3 float or None
        Voxel size in mm along the RAS axes that the model was trained at (None: any).
    orientation : str
        Voxel order of the network's input; always "RAS" in SegLoop.
    normalization : str
        A `Normalization` value.
    normalization_detail : str
        The normalisation in plain words, for the reader of the card.
    size_divisor : int
        Spatial sizes the network accepts are multiples of this.
    patch : tuple of 3 int or None
        Training patch (X, Y, Z) in voxels; inputs are padded to at least this size.
    typical_shape : tuple of 3 int or None
        Typical size of the training images, to warn about much larger scans.
    """

    modality: str = ""
    channels: int = 1
    spacing: tuple[float, float, float] | None = None
    orientation: str = "RAS"
    normalization: str = Normalization.CLIP_ZSCORE
    normalization_detail: str = ""
    size_divisor: int = 16
    patch: tuple[int, int, int] | None = None
    typical_shape: tuple[int, int, int] | None = None


@dataclass
class Processing:
    """What happens around the network: test-time augmentation and clean-up of its output.

    Attributes
    ----------
    test_time_augmentation : list of str
        `Augmentation` values run besides the plain pass, probabilities averaged.
    largest_component : bool
        Keep only the largest 3D connected component of each label.
    """

    test_time_augmentation: list[str] = field(default_factory=list)
    largest_component: bool = False


@dataclass
class Evaluation:
    """Scores of the model on a set of labelled cases; per-label dicts are keyed by label NAME.

    `protocol` says how the cases relate to the model (e.g. "fixed validation set of fine-tuning
    run #3", "fold 0 validation split, also used to pick the epoch"), so a reader knows what the number is worth.

    Attributes
    ----------
    cases : list of str
        Names of the cases scored.
    dice : dict of str to float
        Mean Dice (0..1) per label name over the cases.
    dice_std : dict of str to float
        Standard deviation of Dice per label name (may be empty).
    hd95_mm : dict of str to float
        Mean 95 % Hausdorff distance in mm per label name (may be empty).
    protocol : str
        How the cases relate to the model (see above).
    evaluated_with : str
        Which code path produced the numbers, e.g. "ONNX Runtime, segloop.model.inference.predict".
    """

    cases: list[str] = field(default_factory=list)
    dice: dict[str, float] = field(default_factory=dict)
    dice_std: dict[str, float] = field(default_factory=dict)
    hd95_mm: dict[str, float] = field(default_factory=dict)
    protocol: str = ""
    evaluated_with: str = ""

    @property
    def mean_dice(self) -> float | None:
        """Mean of the per-label Dice values.

        Returns
        -------
        float or None
            Unweighted mean over the labels of `dice`; None when `dice` is empty.

        Examples
        --------
        >>> Evaluation(dice={"anterior": 0.75, "posterior": 0.25}).mean_dice
        0.5
        """
        return sum(self.dice.values()) / len(self.dice) if self.dice else None


@dataclass
class Metrics:
    """The model's validation scores and, for a fine-tuned model, its parent's on the same cases.

    Attributes
    ----------
    validation : Evaluation or None
        The model's scores.
    parent_validation : Evaluation or None
        The parent model's scores on the same cases (fine-tuned models).
    onnx_vs_pytorch : dict or None
        The export parity check (`segloop.training.export.check_parity`): ``cases``,
        ``max_abs_diff`` (largest |logit difference|) and ``mean_label_agreement`` (0..1).
    """

    validation: Evaluation | None = None
    parent_validation: Evaluation | None = None
    onnx_vs_pytorch: dict[str, Any] | None = None


@dataclass
class ModelCard:
    """Everything a user needs to know about a model, and what the app needs to run it.

    Attributes
    ----------
    name : str
        Model name.
    version : int
        Version number the card was written with (the registry keeps its own).
    task : str
        What it segments, in plain words.
    labels : list of LabelInfo
        Output classes, background (value 0) included.
    input : InputSpec
        What the network expects.
    processing : Processing
        Test-time augmentation and output clean-up.
    architecture : dict
        Network entry that `segloop.model.network.build_network` builds.
    training : dict
        Training record: data, settings, and for a fine-tuned model ``fine_tuned_from``,
        ``corrected_cases`` and ``original_cases``.
    split : dict
        seed, n_folds, fold, and the ``train`` and ``validation`` case names.
    metrics : Metrics
        Validation scores.
    onnx_file : str
        File name of the ONNX model the card describes.
    onnx_sha256 : str
        Hex sha256 of that file.
    parent : str or None
        The model it was fine-tuned from, e.g. "hippocampus-unet v1".
    created : str
        ISO 8601 UTC time of writing (`now_iso`).
    license, attribution, intended_use : str
        Terms of use, credit for the training data, and what the model is (not) for.
    schema : int
        Layout of the card (`CARD_SCHEMA` for cards this module builds).
    """

    name: str
    version: int
    task: str
    labels: list[LabelInfo]
    input: InputSpec = field(default_factory=InputSpec)
    processing: Processing = field(default_factory=Processing)
    architecture: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)  # seed, n_folds, fold, train, validation (case names)
    metrics: Metrics = field(default_factory=Metrics)
    onnx_file: str = ""
    onnx_sha256: str = ""
    parent: str | None = None
    created: str = ""
    license: str = ""
    attribution: str = ""
    intended_use: str = ""
    schema: int = CARD_SCHEMA

    @property
    def foreground_labels(self) -> list[LabelInfo]:
        """The labels other than background.

        Returns
        -------
        list of LabelInfo
            Every label whose value is not 0, in card order.
        """
        return [lab for lab in self.labels if lab.value != 0]

    @property
    def label_names(self) -> dict[int, str]:
        """Label names by value.

        Returns
        -------
        dict of int to str
            Value -> name, background included.
        """
        return {lab.value: lab.name for lab in self.labels}

    @property
    def num_classes(self) -> int:
        """Number of output channels of the network.

        Returns
        -------
        int
            Highest label value + 1 (not the number of labels listed, should values skip).

        Examples
        --------
        >>> ModelCard("m", 1, "task", [LabelInfo(0, "background"), LabelInfo(2, "posterior")]).num_classes
        3
        """
        return max(lab.value for lab in self.labels) + 1

    def to_dict(self) -> dict[str, Any]:
        """Return the card as nested plain dicts and lists (`dataclasses.asdict`), ready for JSON.

        Returns
        -------
        dict
            A deep copy; tuples (spacing, patch...) stay tuples.
        """
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        """Write the card as indented JSON, atomically (an existing file is replaced).

        Parameters
        ----------
        path : str or pathlib.Path
            Target file, usually `card_path_for` of the ONNX file; missing folders are created.

        Returns
        -------
        None

        Raises
        ------
        OSError
            When the file cannot be written (a previous file is left intact).
        """
        atomic_write_json(path, self.to_dict())


def card_path_for(onnx_path: str | Path) -> Path:
    """Map `model.onnx` -> `model.card.json`, the card's place beside its model.

    Parameters
    ----------
    onnx_path : str or pathlib.Path
        The model file; a name not ending in ".onnx" gets ".card.json" appended whole.

    Returns
    -------
    pathlib.Path
        The card path in the same folder; nothing is checked on disk.

    Examples
    --------
    >>> card_path_for("weights/hippocampus-unet-v1.onnx").as_posix()
    'weights/hippocampus-unet-v1.card.json'
    >>> card_path_for("model.bin").name
    'model.bin.card.json'
    """
    p = Path(onnx_path)
    return p.with_name(p.name[: -len(".onnx")] + CARD_SUFFIX if p.name.endswith(".onnx") else p.name + CARD_SUFFIX)


def _evaluation_v1(scores: dict[str, Any], names: dict[str, str], cases: list[str], protocol: str) -> Evaluation:
    """A schema-1 score dict ({label name or value: dice}) as an Evaluation keyed by label name."""
    def by_name(d: Any) -> dict[str, float]:
        if not isinstance(d, dict):
            return {}
        return {names.get(str(k), str(k)): float(v["mean"] if isinstance(v, dict) else v) for k, v in d.items()
                if isinstance(v, (int, float)) or isinstance(v, dict)}
    return Evaluation(cases=list(cases), dice=by_name(scores.get("dice")), dice_std=by_name(scores.get("dice_std")),
                      hd95_mm=by_name(scores.get("hd95_mm")), protocol=protocol,
                      evaluated_with=str(scores.get("evaluated_with", "")))


def migrate_card_dict(data: dict[str, Any]) -> dict[str, Any]:
    """Convert a parsed card of any known layout to a schema-2 dict.

    Schema 1 kept `postprocessing` and `test_time_augmentation` inside `input` and had two metric
    layouts: `metrics.validation.dice` keyed by label name (trained models) and `metrics.val_dice` keyed
    by label value (fine-tuned models, with `parent_val_dice`).

    Parameters
    ----------
    data : dict
        The card's parsed JSON; a missing ``schema`` means 1.

    Returns
    -------
    dict
        `data` itself when it is already schema 2 or later; otherwise a new dict (`data` is not
        modified) with ``processing``, ``metrics`` as `Metrics` dicts keyed by label name, schema-1
        training cases split into ``corrected_cases`` and ``original_cases``, and ``schema`` 2.

    Examples
    --------
    >>> old = {"labels": [{"value": 0, "name": "background"}, {"value": 1, "name": "anterior"}],
    ...        "input": {"test_time_augmentation": ["flip_left_right"]}, "metrics": {"val_dice": {"1": 0.8}}}
    >>> new = migrate_card_dict(old)
    >>> new["schema"], new["processing"], new["metrics"]["validation"]["dice"]
    (2, {'test_time_augmentation': ['flip_left_right'], 'largest_component': False}, {'anterior': 0.8})
    """
    if int(data.get("schema", 1)) >= CARD_SCHEMA:
        return data
    out = dict(data)
    inp = dict(data.get("input") or {})
    post = inp.pop("postprocessing", {}) or {}
    out["processing"] = {"test_time_augmentation": list(inp.pop("test_time_augmentation", []) or []),
                         "largest_component": bool(post.get("largest_component", False))}
    out["input"] = inp
    names = {str(lab["value"]): str(lab["name"]) for lab in data.get("labels") or []}
    old = dict(data.get("metrics") or {})
    val_cases = list((data.get("split") or {}).get("validation") or [])
    metrics: dict[str, Any] = {"onnx_vs_pytorch": old.get("onnx_vs_pytorch")}
    if isinstance(old.get("validation"), dict):
        v = old["validation"]
        metrics["validation"] = dataclasses.asdict(_evaluation_v1(
            v, names, val_cases, "validation split of the training run (it also chose the epoch)"))
    elif "val_dice" in old:
        cases = list(old.get("validation_cases") or val_cases)
        metrics["validation"] = dataclasses.asdict(_evaluation_v1(
            {"dice": old["val_dice"]}, names, cases, "fixed validation set of the fine-tuning run"))
        if "parent_val_dice" in old:
            metrics["parent_validation"] = dataclasses.asdict(_evaluation_v1(
                {"dice": old["parent_val_dice"]}, names, cases, "fixed validation set of the fine-tuning run"))
    out["metrics"] = metrics
    training = dict(data.get("training") or {})
    if training.get("fine_tuned_from") and "train_cases" in training:  # schema 1 named corrections "<scan>@v<N>"
        names = list(training.pop("train_cases") or [])
        training["corrected_cases"] = [n for n in names if "@v" in n]
        training["original_cases"] = [n for n in names if "@v" not in n]
    out["training"] = training
    out["schema"] = CARD_SCHEMA
    return out


def training_data_summary(card: ModelCard) -> str:
    """Describe in one line what a model was trained on, e.g. '3 corrected + 10 original cases, fine-tuned from x v1'.

    Parameters
    ----------
    card : ModelCard
        The model's card (its ``training`` and ``split`` entries are read).

    Returns
    -------
    str
        For a fine-tuned model the counts of corrected and original cases and the parent; otherwise
        "<n> training cases of <data>", either part alone, or "" when the card says neither.

    Examples
    --------
    >>> card = ModelCard("m", 2, "task", [LabelInfo(0, "background")], split={"train": ["a", "b"]},
    ...                  training={"data": "MSD Task04"})
    >>> training_data_summary(card)
    '2 training cases of MSD Task04'
    """
    training = card.training or {}
    if training.get("fine_tuned_from"):
        return (f"{len(training.get('corrected_cases') or [])} corrected + {len(training.get('original_cases') or [])} "
                f"original cases, fine-tuned from {training['fine_tuned_from']}")
    n = len((card.split or {}).get("train") or [])
    text = f"{n} training cases" if n else ""
    if training.get("data"):
        text = f"{text} of {training['data']}" if text else str(training["data"])
    return text


def metrics_from_dict(data: dict[str, Any] | None) -> Metrics:
    """Build Metrics from their schema-2 dict (as stored in a card or the registry).

    Parameters
    ----------
    data : dict or None
        ``{"validation": {...}, "parent_validation": {...}, "onnx_vs_pytorch": {...}}``, each optional;
        unknown keys inside an evaluation are ignored.

    Returns
    -------
    Metrics
        Empty (all None) for None or ``{}``.
    """
    data = data or {}
    ev = lambda d: Evaluation(**{k: v for k, v in d.items() if k in Evaluation.__dataclass_fields__}) if d else None  # noqa: E731
    return Metrics(validation=ev(data.get("validation")), parent_validation=ev(data.get("parent_validation")),
                   onnx_vs_pytorch=data.get("onnx_vs_pytorch"))


def _tuple(v: Any) -> tuple | None:
    return tuple(v) if v is not None else None


def card_from_dict(data: dict[str, Any]) -> ModelCard:
    """Build a card from parsed JSON of any known schema, with a clear error for missing fields.

    Parameters
    ----------
    data : dict
        The card's parsed JSON; read through `migrate_card_dict`. ``labels`` (each with ``value`` and
        ``name``), ``name``, ``version`` and ``task`` are required; unknown keys are ignored; the input's
        ``spacing``, ``patch`` and ``typical_shape`` lists become tuples.

    Returns
    -------
    ModelCard

    Raises
    ------
    ModelError
        When a required field is missing or a value has the wrong type.
    """
    try:
        data = migrate_card_dict(data)
        labels = [LabelInfo(int(x["value"]), str(x["name"]), str(x.get("color", "#ffffff"))) for x in data["labels"]]
        inp = {k: v for k, v in (data.get("input") or {}).items() if k in InputSpec.__dataclass_fields__}
        for key in ("spacing", "patch", "typical_shape"):
            inp[key] = _tuple(inp.get(key))
        proc = {k: v for k, v in (data.get("processing") or {}).items() if k in Processing.__dataclass_fields__}
        simple = {k: v for k, v in data.items() if k in ModelCard.__dataclass_fields__
                  and k not in ("labels", "input", "processing", "metrics")}
        return ModelCard(labels=labels, input=InputSpec(**inp), processing=Processing(**proc),
                         metrics=metrics_from_dict(data.get("metrics")), **simple)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"model card is incomplete or malformed ({exc})") from None


def load_card(path: str | Path) -> ModelCard:
    """Read a model card JSON file (any known schema).

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.card.json`` file.

    Returns
    -------
    ModelCard

    Raises
    ------
    ModelError
        When the file is missing, is not valid JSON, or is not a complete card (see `card_from_dict`).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path.name}: model card not found (every model needs a {CARD_SUFFIX} beside it)") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path.name}: model card is not valid JSON ({exc})") from None
    return card_from_dict(data)


def derived_card(parent: ModelCard, *, name: str, version: int, onnx_path: str | Path, architecture: dict[str, Any],
                 training: dict[str, Any], split: dict[str, Any], metrics: Metrics, parent_ref: str) -> ModelCard:
    """The card of a model fine-tuned from `parent`: the parent's task, labels, input spec, processing,
    licence and attribution, with this model's own files, training record, split and metrics.

    Parameters
    ----------
    parent : ModelCard
        The base model's card; not modified.
    name : str
        The new model's name.
    version : int
        Its version number.
    onnx_path : str or pathlib.Path
        Its exported ONNX file, which must exist: the card records its name and sha256.
    architecture, training, split : dict
        Its network entry, training record and train/validation case names.
    metrics : Metrics
        Its scores (and the parent's on the same cases).
    parent_ref : str
        How the card names the parent, e.g. "hippocampus-unet v1".

    Returns
    -------
    ModelCard
        A new card, ``created`` now, schema `CARD_SCHEMA`; not written to disk.

    Raises
    ------
    OSError
        When `onnx_path` cannot be read.
    """
    onnx_path = Path(onnx_path)
    return dataclasses.replace(
        parent, name=name, version=version, architecture=architecture, training=training, split=split,
        metrics=metrics, onnx_file=onnx_path.name, onnx_sha256=file_sha256(onnx_path), parent=parent_ref,
        created=now_iso(), schema=CARD_SCHEMA)


def now_iso() -> str:
    """Return the current UTC time as an ISO 8601 string (seconds), as cards record it.

    Returns
    -------
    str
        E.g. "2025-01-31T09:15:02+00:00".
    """
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def file_sha256(path: str | Path) -> str:
    """Return the hex sha256 of a file, to tie a card to exactly one ONNX file.

    Parameters
    ----------
    path : str or pathlib.Path
        The file; read in 1 MiB chunks.

    Returns
    -------
    str
        64 lowercase hex digits.

    Raises
    ------
    OSError
        When the file cannot be read.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_scan_fits(card: ModelCard, shape: tuple[int, ...], spacing: tuple[float, float, float],
                    channels: int = 1) -> list[str]:
    """Warnings for a scan the model may not suit; raises ModelError when it cannot run at all.

    Parameters
    ----------
    card : ModelCard
        The model's card.
    shape : tuple of int
        Scan shape in voxels (must be 3D).
    spacing : tuple of 3 float
        Voxel size in mm along the RAS axes.
    channels : int, optional
        Image channels of the scan.

    Returns
    -------
    list of str
        Plain-English warnings (spacing far from the card's, scan much larger than the training crops):
        a spacing off by more than a factor 2 on any axis from ``card.input.spacing``, or more than 8
        times the voxels of ``card.input.typical_shape``. Empty when the scan suits the model.

    Raises
    ------
    ModelError
        When `channels` differs from the card's, or the scan is not 3D.
    """
    if channels != card.input.channels:
        raise ModelError(f"model {card.name} expects {card.input.channels} channel(s), the scan has {channels}")
    if len(shape) != 3:
        raise ModelError(f"model {card.name} needs a 3D scan, got shape {tuple(shape)}")
    warnings = []
    expected = card.input.spacing
    if expected:
        ratios = [s / e for s, e in zip(spacing, expected)]
        if any(r < 0.5 or r > 2.0 for r in ratios):
            warnings.append(
                f"voxel spacing {tuple(round(s, 2) for s in spacing)} mm is far from the {tuple(expected)} mm "
                f"the model was trained on; results may be poor"
            )
    typical = card.input.typical_shape
    if typical:
        factor = 1.0
        for s, t in zip(shape, typical):
            factor *= s / t
        if factor > 8:
            warnings.append(
                f"scan of shape {tuple(shape)} is much larger than the {tuple(typical)} crops the model was "
                f"trained on; it runs by sliding window and may find structures outside the region of interest"
            )
    return warnings
