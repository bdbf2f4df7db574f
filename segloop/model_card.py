"""Model cards: the JSON file beside every ONNX model that says what it is, expects and achieves.

The app and CLI read nothing about a model from code: labels, colours, input expectations and
metrics all come from the card, so any 3D segmentation model with a card can be served.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from segloop.atomic_io import atomic_write_json
from segloop.errors import ModelError

CARD_SUFFIX = ".card.json"


@dataclass
class LabelInfo:
    """One output class of the model."""

    value: int
    name: str
    color: str  # "#rrggbb"


@dataclass
class ModelCard:
    """Everything a user needs to know about a model, and what the app needs to run it."""

    name: str
    version: int
    task: str
    labels: list[LabelInfo]
    input: dict[str, Any]  # modality, channels, spacing, orientation, normalization, size_divisor
    architecture: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    onnx_file: str = ""
    onnx_sha256: str = ""
    parent: str | None = None
    created: str = ""
    license: str = ""
    attribution: str = ""
    intended_use: str = ""

    @property
    def foreground_labels(self) -> list[LabelInfo]:
        return [lab for lab in self.labels if lab.value != 0]

    @property
    def label_names(self) -> dict[int, str]:
        return {lab.value: lab.name for lab in self.labels}

    @property
    def num_classes(self) -> int:
        return max(lab.value for lab in self.labels) + 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())


def card_path_for(onnx_path: str | Path) -> Path:
    """`model.onnx` -> `model.card.json`, the card's place beside its model."""
    p = Path(onnx_path)
    return p.with_name(p.name[: -len(".onnx")] + CARD_SUFFIX if p.name.endswith(".onnx") else p.name + CARD_SUFFIX)


def card_from_dict(data: dict[str, Any]) -> ModelCard:
    """Build a card from parsed JSON, with a clear error for missing fields."""
    try:
        labels = [LabelInfo(int(x["value"]), str(x["name"]), str(x.get("color", "#ffffff"))) for x in data["labels"]]
        known = {f for f in ModelCard.__dataclass_fields__}
        rest = {k: v for k, v in data.items() if k in known and k != "labels"}
        return ModelCard(labels=labels, **rest)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"model card is incomplete or malformed ({exc})") from None


def load_card(path: str | Path) -> ModelCard:
    """Read a model card JSON file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path.name}: model card not found (every model needs a {CARD_SUFFIX} beside it)") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path.name}: model card is not valid JSON ({exc})") from None
    return card_from_dict(data)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, to tie a card to exactly one ONNX file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_scan_fits(card: ModelCard, shape: tuple[int, ...], spacing: tuple[float, float, float],
                    channels: int = 1) -> list[str]:
    """Warnings for a scan the model may not suit; raises ModelError when it cannot run at all."""
    expected_channels = int(card.input.get("channels", 1))
    if channels != expected_channels:
        raise ModelError(f"model {card.name} expects {expected_channels} channel(s), the scan has {channels}")
    if len(shape) != 3:
        raise ModelError(f"model {card.name} needs a 3D scan, got shape {tuple(shape)}")
    warnings = []
    expected = card.input.get("spacing")
    if expected:
        ratios = [s / e for s, e in zip(spacing, expected)]
        if any(r < 0.5 or r > 2.0 for r in ratios):
            warnings.append(
                f"voxel spacing {tuple(round(s, 2) for s in spacing)} mm is far from the {tuple(expected)} mm "
                f"the model was trained on; results may be poor"
            )
    typical = card.input.get("typical_shape")
    if typical:
        factor = 1
        for s, t in zip(shape, typical):
            factor *= s / t
        if factor > 8:
            warnings.append(
                f"scan of shape {tuple(shape)} is much larger than the {tuple(typical)} crops the model was "
                f"trained on; it runs by sliding window and may find structures outside the region of interest"
            )
    return warnings
