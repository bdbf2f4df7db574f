"""The MNI152 template and anatomy defined once in its space (MNI millimetres, RAS+: x < 0 is left).

The template is the MNI ICBM152 2009 nonlinear symmetric T1 template ("mni_icbm152_t1_tal_nlin_sym_09a",
1 mm, 197x233x189 voxels) as shipped *inside the nilearn wheel*
(`nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz`, the file behind
`nilearn.datasets.load_mni152_template`); nilearn's copy is skull-stripped (zero outside the ICBM 2009
brain mask) and rescaled to uint8. Nothing is downloaded: the file is read from the installed package.

Template: V. Fonov, A. Evans, R. McKinstry, C. Almli, D. Collins, "Unbiased nonlinear average
age-appropriate brain templates from birth to adulthood", NeuroImage 47 (2009) S102; and Fonov et al.,
NeuroImage 54 (2011) 313-327. Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre,
Montreal Neurological Institute, McGill University. The MNI distribution page
(http://www.bic.mni.mcgill.ca/ServicesAtlases/ICBM152NLin2009) grants permission to use, copy, modify
and distribute it for any purpose without fee, provided the copyright notice appears in all copies,
with no warranty. nilearn's own description file (icbm152_2009.rst) lists the licence as "unknown".
nilearn itself is BSD-3-Clause.

Hippocampus boxes
-----------------
The left box is x -44..-8, y -48..+4, z -33..+7 mm (36 x 52 x 40 voxels at 1 mm); the right box is its
mirror image (the template is exactly left-right symmetric). How it was chosen:

- Anatomy. Seitzman et al. 2018 (the ROI set shipped with nilearn,
  `seitzman_2018_ROIs_300inVol_MNI_allInfo.txt`) put its hippocampus ROIs at (-25.6, -11.8, -21.5)
  (head) and (-25.2, -38.8, -2.0) (tail), mirrored on the right; the literature hippocampal centroid
  is about (+-26, -22, -14). The shipped hippocampus model, run on the MNI152 template itself,
  labels hippocampus over x -37..-14, y -41..-4, z -30..+4 with centroid (-27, -21, -15).
- Size. The network z-scores each crop over the whole crop, so the box stays close to the
  Decathlon crops it was trained on (shapes median 35 x 50 x 36, 95th percentile 38 x 55 x 42 voxels at
  1 mm), instead of a generous box with much more surrounding tissue.
- Margin. Around the model's template labels the box leaves about 6-8 mm in x and y and 3 mm at
  both ends in z; the Decathlon crops leave a median 5-7 mm (minimum 3 mm) around their labels.
  z is tightest because the template's hippocampus (head to upturned tail) is 34 mm tall, against a
  Decathlon median of 26 voxels. The registration's own error on synthetic test heads is under 1 mm;
  on real heads anatomy adds a few mm that only a non-linear registration would remove.
The demo crop (`segloop.data.demo`) uses this box too; it replaced the first demo crop x -40..-8, y -42..+2, z -28..+4, which cut the template's
hippocampus at its lower and posterior ends.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from segloop.errors import SegLoopError

MNI_T1_FILE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def mni152_t1_path() -> Path:
    """Find the MNI152 T1 template inside the installed nilearn package (no import, no download).

    nilearn is located with `importlib.util.find_spec`, so its (slow) import is avoided.

    Returns
    -------
    pathlib.Path
        `MNI_T1_FILE` in nilearn's ``datasets/data`` folder, or else the first ``mni_icbm152_t1*.nii*``
        file there (by name).

    Raises
    ------
    segloop.errors.SegLoopError
        When nilearn is not installed or ships no MNI152 T1 file.
    """
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.origin:
        raise SegLoopError("the demo scan needs the nilearn package (pip install nilearn)")
    data = Path(spec.origin).parent / "datasets" / "data"
    path = data / MNI_T1_FILE
    if path.is_file():
        return path
    found = sorted(data.glob("mni_icbm152_t1*.nii*"))
    if not found:
        raise SegLoopError(f"the MNI152 T1 template was not found in the nilearn package ({data})")
    return found[0]


Box = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]

LEFT_HIPPOCAMPUS_BOX_MM: Box = ((-44.0, -8.0), (-48.0, 4.0), (-33.0, 7.0))


def mirror_box(box_mm: Box) -> Box:
    """The box mirrored across the midsagittal plane (x -> -x)."""
    (x0, x1), y, z = box_mm
    return ((-x1, -x0), y, z)


RIGHT_HIPPOCAMPUS_BOX_MM: Box = mirror_box(LEFT_HIPPOCAMPUS_BOX_MM)
HIPPOCAMPUS_BOXES_MM: dict[str, Box] = {"left": LEFT_HIPPOCAMPUS_BOX_MM, "right": RIGHT_HIPPOCAMPUS_BOX_MM}
