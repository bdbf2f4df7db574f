"""The registration's QC picture: the template brain's outline and the hippocampus boxes over the scan.

What FreeSurfer users review as snapshots: three slices of the scan (axial, coronal, sagittal) through the
left hippocampus box, with the MNI152 brain outline mapped into the scan by the registration (yellow) and
both boxes (orange left, cyan right). When the outline follows the brain and the boxes sit on the medial
temporal lobes, the registration is right, whatever its match score. Only the three slices are mapped, so
a picture of a 1 mm head costs a few tens of milliseconds.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from segloop.data.mni import HIPPOCAMPUS_BOXES_MM, mni152_t1_path
from segloop.display import planes
from segloop.display.windowing import apply_window, auto_window
from segloop.io.atomic import atomic_write_bytes
from segloop.io.volume import Volume

#: Overlay colours: template brain outline, left box, right box.
COLORS = {1: (255, 215, 0), 2: (255, 140, 0), 3: (0, 200, 255)}
#: Pixels per mm of the picture (every plane drawn at the same scale).
PX_PER_MM = 1.5


@functools.lru_cache(maxsize=1)
def _template_brain() -> tuple[np.ndarray, np.ndarray]:
    """(bool brain mask, its voxel->MNI affine) of the template (nilearn's copy is zero outside the brain)."""
    img = nib.load(str(mni152_t1_path()))
    return np.asarray(img.dataobj) > 0, np.asarray(img.affine, float)


def _slice_voxels(shape: tuple[int, int, int], plane: str, index: int) -> np.ndarray:
    """Voxel coordinates (rows, cols, 3) of the pixels of a displayed slice, in display order."""
    # index grids as zero-stride views: only the slice itself is ever materialised
    grids = [np.broadcast_to(np.arange(n, dtype=np.int32).reshape([-1 if a == k else 1 for k in range(3)]), shape)
             for a, n in enumerate(shape)]
    return np.stack([planes.slice_view(g, plane, index) for g in grids], axis=-1)


def _edge(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask)


def qc_layers(volume: Volume, scan_to_mni: np.ndarray, boxes_mm: dict | None = None,
              through: np.ndarray | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The three slices of the QC picture: grey pixels and overlay indices per plane.

    Parameters
    ----------
    volume : Volume
        The scan (RAS voxel order).
    scan_to_mni : np.ndarray
        float (4, 4), scan world mm -> MNI mm (the registration to judge).
    boxes_mm : dict, optional
        Side -> box ((x0, x1), (y0, y1), (z0, z1)) in MNI mm (default: `HIPPOCAMPUS_BOXES_MM`).
    through : np.ndarray, optional
        The voxel (RAS i, j, k) the slices pass through (default: the left box's centre).

    Returns
    -------
    dict
        Plane -> (grey uint8 (rows, cols), overlay uint8 (rows, cols): 0 none, 1 template brain outline,
        2 left box, 3 right box), in `segloop.display.planes` display order.
    """
    boxes = HIPPOCAMPUS_BOXES_MM if boxes_mm is None else boxes_mm
    brain, brain_affine = _template_brain()
    to_mni = np.asarray(scan_to_mni, float) @ volume.affine
    if through is None:
        left = np.array([(lo + hi) / 2 for lo, hi in boxes.get("left", next(iter(boxes.values())))] + [1.0])
        through = (np.linalg.inv(to_mni) @ left)[:3]
    through = np.clip(np.round(through).astype(int), 0, np.array(volume.shape) - 1)
    window = auto_window(volume.array)
    out = {}
    for plane in planes.PLANES:
        index = int(through[planes.PLANE_AXIS[plane]])
        vox = _slice_voxels(volume.shape, plane, index).astype(float)
        mni = vox @ to_mni[:3, :3].T + to_mni[:3, 3]
        t_vox = (mni - brain_affine[:3, 3]) @ np.linalg.inv(brain_affine[:3, :3]).T
        inside_tpl = ndimage.map_coordinates(brain, np.moveaxis(t_vox, -1, 0), order=0, mode="constant", cval=0) > 0
        overlay = np.where(_edge(inside_tpl), 1, 0).astype(np.uint8)
        for value, side in ((2, "left"), (3, "right")):
            if side in boxes:
                lo, hi = np.array(boxes[side], float).T
                inside = np.all((mni >= lo) & (mni <= hi), axis=-1)
                overlay[_edge(inside)] = value
        grey = apply_window(planes.slice_view(volume.array, plane, index), *window)
        out[plane] = (grey, overlay)
    return out


def qc_png(volume: Volume, scan_to_mni: np.ndarray, title: str = "", boxes_mm: dict | None = None) -> bytes:
    """The QC picture as one PNG: the three slices side by side at one scale, and `title` above them.

    Parameters
    ----------
    volume, scan_to_mni, boxes_mm
        As for `qc_layers`.
    title : str, optional
        One line: the scan's name and the verdict, say.

    Returns
    -------
    bytes
        An RGB PNG.
    """
    tiles = []
    for plane, (grey, overlay) in qc_layers(volume, scan_to_mni, boxes_mm).items():
        rgb = np.repeat(grey[..., None], 3, axis=2)
        for value, color in COLORS.items():
            rgb[overlay == value] = color
        dr, dc = planes.pixel_spacing(volume.spacing, plane)
        size = (max(1, round(rgb.shape[1] * dc * PX_PER_MM)), max(1, round(rgb.shape[0] * dr * PX_PER_MM)))
        tiles.append((plane, Image.fromarray(rgb).resize(size, Image.NEAREST)))
    pad, top = 8, 22
    width = sum(t.width for _, t in tiles) + pad * (len(tiles) + 1)
    height = max(t.height for _, t in tiles) + top + pad + 16
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 4), title, fill=(255, 255, 255))
    x = pad
    for plane, tile in tiles:
        canvas.paste(tile, (x, top))
        draw.text((x, top + tile.height + 2), plane, fill=(200, 200, 200))
        x += tile.width + pad
    draw.text((width - 330, height - 14), "yellow: MNI152 brain  orange: left box  cyan: right box",
              fill=(200, 200, 200))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def write_qc(folder: str | Path, name: str, volume: Volume, registration, note: str = "") -> Path:
    """Write `<folder>/<name>_qc.png`, the QC picture of a registration, titled with its verdict; returns the path.

    Parameters
    ----------
    folder : str or pathlib.Path
        Created if needed.
    name : str
        The scan's name (the file's stem).
    volume : Volume
        The scan.
    registration : segloop.wholehead.registration.Registration
        Its registration (accepted or not).
    note : str, optional
        Appended to the title (e.g. "accepted by a person").
    """
    title = (f"{name}: {registration.verdict} (match {registration.quality:.2f}, brain covered "
             f"{registration.coverage:.0%})" + (f"; {note}" if note else ""))
    path = Path(folder) / f"{name}_qc.png"
    atomic_write_bytes(path, qc_png(volume, registration.scan_to_mni, title))
    return path
