"""Segment a scan the way a user has it: a hippocampus crop as it is, a whole head side by side.

`scan_kind` decides from the scan's physical extent whether it is a crop like the model's training
data or a whole head. A whole head is registered to the MNI152 template (`registration`), each side's
box (`regions`) is sampled at the model card's spacing on an MNI-aligned grid, the model runs on each
crop exactly as it runs on a crop scan (card normalisation, test-time augmentation, clean-up), and the
probabilities are interpolated back onto the scan's own grid: one label map on the scan's grid and
affine, with the card's labels. Which side a voxel belongs to comes from the box it was segmented in.

`volume_report` turns a result into the per-side, per-label volumes, asymmetry and head size a
researcher tabulates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from segloop.data.mni import HIPPOCAMPUS_BOXES_MM
from segloop.errors import SegLoopError
from segloop.io.volume import Volume
from segloop.model.card import ModelCard
from segloop.model.inference import DEFAULT_MODEL, get_session, keep_largest_component, predict
from segloop.wholehead.regions import box_corners_in_scan, box_to_scan, extract_box
from segloop.wholehead.registration import Registration, Verdict, register_to_template

#: A scan whose largest extent is at most this (mm) is a crop like the training data.
CROP_MAX_MM = 100.0
#: A whole head spans at least this (mm) along its two largest extents (a slab may be thin in the third).
HEAD_MIN_MM = 120.0
#: The smaller side's segmentation below this fraction of the other's flags the scan (a box that missed):
#: on the 5 real dev heads correctly placed boxes give 0.82-0.96, boxes 15 mm off 0.06-0.55.
MIN_SIDE_RATIO = 0.6
#: How far (mm, per axis) a person may move a box: a nudge, not a new placement.
MAX_BOX_SHIFT_MM = 15.0


class RegistrationRefused(SegLoopError):
    """A whole head whose registration the quality check refused; `registration` is kept for its QC picture."""

    def __init__(self, message: str, registration: Registration) -> None:
        super().__init__(message)
        self.registration = registration


class ScanKind(StrEnum):
    """Which path a scan takes."""

    CROP = "crop"
    WHOLE_HEAD = "whole head"


class Mode(StrEnum):
    """What the user asks for: decide from the scan's extent, or force a path."""

    AUTO = "auto"
    CROP = "crop"
    WHOLE_HEAD = "whole-head"


class Side(StrEnum):
    LEFT = "left"
    RIGHT = "right"


class Placement(StrEnum):
    """Who placed a whole head's hippocampus boxes: the registration, or a person who overruled it."""

    SOFTWARE = "software"
    PERSON = "person"


@dataclass
class SideResult:
    """One hemisphere's box and what the model found in it.

    Attributes
    ----------
    corners : np.ndarray
        float64 (8, 3): the box corners in scan voxel coordinates (RAS order); `regions.BOX_EDGES` joins them.
    centre : np.ndarray
        float64 (3,): the box centre in scan voxel coordinates, to jump the viewer there.
    voxels : dict of int to int
        Label value -> voxels of that label segmented in this side's box, on the scan grid.
    """

    side: Side
    corners: np.ndarray
    centre: np.ndarray
    voxels: dict[int, int]
    mean_uncertainty: float
    seconds: float


@dataclass
class Segmentation:
    """A model's segmentation of one scan, on the scan's RAS grid, and how it was made.

    Attributes
    ----------
    labels : np.ndarray
        uint8 (X, Y, Z), the card's label values.
    uncertainty : np.ndarray
        float32 (X, Y, Z), normalised entropy in 0..1 (0 outside the boxes of a whole head).
    timings : dict of str to float
        Seconds per step, in order (e.g. "register", "segment left", "segment right").
    voxel_ml : float
        Volume of one scan voxel in mL.
    verdict : Verdict or None
        Whole head: the registration's verdict, raised from accept to warn when what the model found in
        the boxes is implausible (a side empty, or less than `MIN_SIDE_RATIO` of the other).
    placed_by : Placement or None
        Whole head: `Placement.SOFTWARE`, or `Placement.PERSON` when a person accepted a refused
        registration or moved a box.
    """

    labels: np.ndarray
    uncertainty: np.ndarray
    kind: ScanKind
    card: ModelCard
    provider: str
    provider_note: str
    timings: dict[str, float]
    voxel_ml: float
    warnings: list[str] = field(default_factory=list)
    registration: Registration | None = None
    sides: list[SideResult] = field(default_factory=list)
    verdict: Verdict | None = None  # whole head: the quality check, after what the model found in the boxes
    placed_by: Placement | None = None  # whole head: who placed the boxes

    @property
    def seconds(self) -> float:
        return float(sum(self.timings.values()))

    @property
    def mean_foreground_uncertainty(self) -> float:
        """Mean uncertainty where the model predicts any label (0 when it predicts none)."""
        fg = self.labels > 0
        return float(self.uncertainty[fg].mean()) if fg.any() else 0.0


def extent_mm(volume: Volume) -> tuple[float, float, float]:
    """Physical size of the scan's field of view along its RAS axes, in mm."""
    return tuple(float(n * s) for n, s in zip(volume.shape, volume.spacing))  # type: ignore[return-value]


def scan_kind(volume: Volume) -> ScanKind:
    """Crop or whole head, from the field of view.

    Raises
    ------
    SegLoopError
        When the field of view is neither (e.g. a 110 mm slab): the user must choose a mode.
    """
    ext = sorted(extent_mm(volume), reverse=True)
    if ext[0] <= CROP_MAX_MM:
        return ScanKind.CROP
    if ext[1] >= HEAD_MIN_MM:
        return ScanKind.WHOLE_HEAD
    raise SegLoopError(
        f"the scan covers {' x '.join(f'{e:.0f}' for e in extent_mm(volume))} mm: neither a hippocampus crop "
        f"(at most {CROP_MAX_MM:.0f} mm across) nor a whole head (at least {HEAD_MIN_MM:.0f} mm in two directions); "
        "choose the crop or whole-head mode")


def _entropy(probs: np.ndarray) -> np.ndarray:
    """Normalised entropy (0..1) over the class axis of (C, ...) probabilities, float32."""
    p = np.clip(probs, 1e-8, 1.0)
    return (-(probs * np.log(p)).sum(axis=0) / np.log(probs.shape[0])).astype(np.float32)


def _crop_volume(crop: np.ndarray, spacing: float, name: str) -> Volume:
    """A crop sampled on an MNI-aligned grid, as a Volume the model can run on (RAS, `spacing` mm)."""
    affine = np.diag([spacing, spacing, spacing, 1.0])
    return Volume(array=crop, affine=affine, source_affine=affine.copy(), source_shape=crop.shape, name=name)


def segment_whole_head(volume: Volume, model_path: str | Path | None = None,
                       largest_component: bool | None = None, accept_registration: bool = False,
                       box_shifts_mm: dict[str, tuple[float, float, float]] | None = None,
                       registration: Registration | None = None) -> Segmentation:
    """Find and segment both hippocampi of a whole-head scan.

    Parameters
    ----------
    volume : Volume
        The scan in RAS order (any orientation on disk, any voxel size).
    model_path : path, optional
        ONNX model with its card (default: the shipped model).
    largest_component : bool, optional
        Keep only the largest piece of each label per side (None: as the card says).
    accept_registration : bool, optional
        A person looked at the QC picture and accepts a registration the check refused on its match
        (`Registration.overridable`); refusals of non-head input or impossible transforms stand.
    box_shifts_mm : dict, optional
        Side ("left"/"right") -> (dx, dy, dz) in MNI mm: a person moved that box before segmenting.
    registration : Registration, optional
        The scan's registration when already made (the QC picture was drawn from it); else it is made here.

    Returns
    -------
    Segmentation
        Labels and uncertainty on the scan's grid, the registration, each side's box and voxel counts,
        and the time of each step.

    Raises
    ------
    SegLoopError
        When the scan is not a whole-head T1 or its registration fails the quality check.
    """
    timings: dict[str, float] = {}
    reg = registration if registration is not None else register_to_template(volume.array, volume.affine)
    timings["register to MNI152"] = reg.seconds
    overruled = not reg.ok and accept_registration and reg.overridable
    if not reg.ok and not overruled:
        raise RegistrationRefused(f"could not find the hippocampi: {reg.message}", reg)
    shifts = {str(k): tuple(float(v) for v in d) for k, d in (box_shifts_mm or {}).items() if any(d)}
    if any(len(d) != 3 or not all(np.isfinite(d)) or max(map(abs, d)) > MAX_BOX_SHIFT_MM for d in shifts.values()):
        raise SegLoopError(f"a box may be moved by at most {MAX_BOX_SHIFT_MM:.0f} mm along each axis")
    card = get_session(model_path or DEFAULT_MODEL).card
    # Crops at the subject's own scale (the card's spacing in the subject's mm, not the template's):
    # the model learnt hippocampi of their native size.
    spacing = (float(min(card.input.spacing)) if card.input.spacing else 1.0) * reg.atlas_scaling_factor ** (1 / 3)
    if largest_component is None:
        largest_component = card.processing.largest_component
    labels = np.zeros(volume.shape, np.uint8)
    uncertainty = np.zeros(volume.shape, np.float32)
    sides, warnings, provider, note = [], [], "", ""
    for side, box in HIPPOCAMPUS_BOXES_MM.items():
        t0 = time.perf_counter()
        box = shifted_box(box, shifts.get(side))
        crop, crop_affine = extract_box(volume.array, volume.affine, reg.scan_to_mni, box, spacing)
        pred = predict(_crop_volume(crop, spacing, f"{volume.name}_{side}"), model_path, largest_component)
        provider, note = pred.provider, pred.provider_note
        region, probs = box_to_scan(pred.probabilities, crop_affine, volume.shape, volume.affine)
        side_labels = probs.argmax(axis=0).astype(np.uint8)
        if largest_component:
            side_labels = keep_largest_component(side_labels)
        free = labels[region] == 0  # the boxes are 16 mm apart in MNI space; never overwrite the other side
        labels[region][free] = side_labels[free]
        side_unc = _entropy(probs)
        uncertainty[region] = np.maximum(uncertainty[region], side_unc)
        fg = side_labels > 0
        corners, centre = box_corners_in_scan(box, volume.affine, reg.scan_to_mni)
        sides.append(SideResult(Side(side), corners, centre,
                                {lab.value: int((side_labels == lab.value).sum()) for lab in card.foreground_labels},
                                float(side_unc[fg].mean()) if fg.any() else 0.0, time.perf_counter() - t0))
        timings[f"segment {side}"] = time.perf_counter() - t0
        if not fg.any():
            warnings.append(f"nothing was segmented on the {side} side; check the box outline on the scan")
    voxel_ml = float(abs(np.linalg.det(volume.affine[:3, :3]))) / 1000.0
    verdict = Verdict.WARN if overruled else reg.verdict
    if reg.verdict is Verdict.WARN:
        warnings.insert(0, reg.message)
    if overruled:
        warnings.insert(0, f"the registration was accepted by a person although the check refused it ({reg.message})")
    if shifts:
        warnings.append("boxes moved by a person: " + ", ".join(
            f"{side} by ({', '.join(f'{v:+.0f}' for v in d)}) mm" for side, d in shifts.items()))
    implausible = implausible_sides(sides)
    if implausible:
        warnings.append(implausible)
        if verdict is Verdict.ACCEPT:
            verdict = Verdict.WARN
    placed = Placement.PERSON if (overruled or shifts) else Placement.SOFTWARE
    return Segmentation(labels, uncertainty, ScanKind.WHOLE_HEAD, card, provider, note, timings, voxel_ml,
                        warnings, reg, sides, verdict=verdict, placed_by=placed)


def shifted_box(box: tuple, shift_mm: tuple[float, float, float] | None) -> tuple:
    """A box ((x0, x1), (y0, y1), (z0, z1)) in MNI mm, moved by `shift_mm` (unchanged for None)."""
    if not shift_mm:
        return box
    return tuple((lo + d, hi + d) for (lo, hi), d in zip(box, shift_mm))


def implausible_sides(sides: list[SideResult]) -> str:
    """Why what the model found in the two boxes does not look like two hippocampi ("" when it does): a side
    with nothing, or a side with less than `MIN_SIDE_RATIO` of the other's voxels, as when a box missed."""
    totals = {s.side: sum(s.voxels.values()) for s in sides}
    if len(totals) != 2:
        return ""
    small, large = sorted(totals.values())
    if large == 0:
        return "the model found no hippocampus in either box; check the registration picture"
    if small < MIN_SIDE_RATIO * large:
        side = min(totals, key=totals.get)
        return (f"the {side} hippocampus found is {small / large:.0%} of the other side's size; a box may have "
                "missed it: check the boxes on the scan")
    return ""


def segment_scan(volume: Volume, model_path: str | Path | None = None, mode: Mode | str = Mode.AUTO,
                 largest_component: bool | None = None, accept_registration: bool = False,
                 box_shifts_mm: dict[str, tuple[float, float, float]] | None = None,
                 registration: Registration | None = None) -> Segmentation:
    """Segment a scan on the path its extent calls for (or the one `mode` forces).

    Parameters
    ----------
    mode : Mode or str
        "auto" (decide from the field of view), "crop" (run the model on the scan as it is) or
        "whole-head" (localise both hippocampi first).
    largest_component : bool, optional
        Override the card's clean-up, keeping only the largest piece of each label (None: the card decides).
    accept_registration, box_shifts_mm, registration : optional
        A person's say on a whole head's registration (see `segment_whole_head`).

    Returns
    -------
    Segmentation

    Raises
    ------
    SegLoopError
        For a scan that is neither a crop nor a whole head in auto mode, or a failed localisation.
    """
    mode = Mode(mode)
    kind = scan_kind(volume) if mode is Mode.AUTO else (ScanKind.CROP if mode is Mode.CROP else ScanKind.WHOLE_HEAD)
    if kind is ScanKind.WHOLE_HEAD:
        return segment_whole_head(volume, model_path, largest_component, accept_registration, box_shifts_mm,
                                  registration)
    pred = predict(volume, model_path, largest_component=largest_component)
    voxel_ml = float(abs(np.linalg.det(volume.affine[:3, :3]))) / 1000.0
    return Segmentation(pred.labels, pred.uncertainty, ScanKind.CROP, pred.card, pred.provider, pred.provider_note,
                        {"segment": pred.seconds}, voxel_ml, list(pred.warnings))


def asymmetry_percent(left: float, right: float) -> float:
    """Left-right asymmetry index, 100 * (L - R) / ((L + R) / 2); NaN when both are 0."""
    mean = (left + right) / 2.0
    return float(100.0 * (left - right) / mean) if mean > 0 else float("nan")


def volume_report(name: str, seg: Segmentation) -> dict[str, object]:
    """One flat row of what a researcher tabulates about a segmented scan.

    Columns: scan, path, per-side and per-label volumes in mL (`left_<label>_ml`, `left_total_ml`...;
    for a crop, `<label>_ml` only since its side is unknown), asymmetry per label and in total (percent,
    positive when left is larger), the head-size estimate (`etiv_ml`, `atlas_scaling_factor`), the
    registration quality and verdict (accept, warn or refuse accepted by a person) and who placed the boxes
    (`boxes_placed_by`: software or person), mean uncertainty, seconds, the execution provider and the model.
    """
    names = {lab.value: lab.name.replace(" ", "_") for lab in seg.card.foreground_labels}
    row: dict[str, object] = {"scan": name, "path": str(seg.kind), "model": f"{seg.card.name} v{seg.card.version}"}
    if seg.kind is ScanKind.WHOLE_HEAD:
        by_side = {s.side: s for s in seg.sides}
        for side in (Side.LEFT, Side.RIGHT):
            total = 0.0
            for value, label in names.items():
                ml = by_side[side].voxels.get(value, 0) * seg.voxel_ml
                row[f"{side}_{label}_ml"] = round(ml, 4)
                total += ml
            row[f"{side}_total_ml"] = round(total, 4)
        for label in [*names.values(), "total"]:
            row[f"asymmetry_{label}_pct"] = round(asymmetry_percent(float(row[f"left_{label}_ml"]),
                                                                    float(row[f"right_{label}_ml"])), 2)
        reg = seg.registration
        row.update(etiv_ml=round(reg.etiv_ml, 1), atlas_scaling_factor=round(reg.atlas_scaling_factor, 4),
                   registration_quality=round(reg.quality, 4), registration_verdict=str(seg.verdict),
                   boxes_placed_by=str(seg.placed_by))
    else:
        for value, label in names.items():
            row[f"{label}_ml"] = round(int((seg.labels == value).sum()) * seg.voxel_ml, 4)
    row.update(mean_uncertainty=round(seg.mean_foreground_uncertainty, 4), seconds=round(seg.seconds, 3),
               provider=seg.provider)
    return row
