"""Whole-head benchmark: load -> localise -> segment both hippocampi -> save, per step, on whole-head scans.

Scans: the MNI152 template itself, and synthetic whole heads (segloop.data.phantom: the template inside
a skull, scalp and neck, in a random pose, resampled to 0.8-1.5 mm voxels with permuted and flipped
axes, bias field and noise), each written to NIfTI first so that loading is a real file read.

For each scan the SegLoop path runs as `python -m segloop predict` runs it (segloop.wholehead.segment),
timed per step, and is scored against the truth the phantom knows: the error of each hippocampus box
centre (mm) and the Dice, per side, of its label map against the template's own segmentation mapped
through the true pose.

Alternatives, in the same run:
- localisation by an untuned SimpleITK affine (Mattes MI, moments start, 4 mm, one level), the
  reference approach of the issue;
- localisation by ANTsPy's affine registration (`ants.registration(type_of_transform="Affine")`),
  what a neuroimaging user would reach for, when antspyx is installed (`pip install antspyx`; not a
  SegLoop dependency), on the first --ants-scans scans;
- the model run on the whole scan by sliding window (SegLoop before the whole-head path).

Usage: python bench/wholehead.py [--scans 6] [--ants-scans 2] [--seed 0]
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from segloop.data.mni import HIPPOCAMPUS_BOXES_MM, mni152_t1_path  # noqa: E402
from segloop.data.phantom import apply_affine, make_scan, random_scan_to_mni  # noqa: E402
from segloop.io.readers import load_scan  # noqa: E402
from segloop.io.writers import save_label  # noqa: E402
from segloop.model.inference import predict  # noqa: E402
from segloop.wholehead.segment import segment_scan  # noqa: E402

SPACINGS = [(0.8, 0.8, 0.8), (1.0, 1.0, 1.0), (1.2, 1.2, 1.2), (1.5, 1.5, 1.5), (1.0, 1.0, 1.3), (0.9, 0.9, 1.1)]
CENTRES = {side: np.mean(box, axis=1) for side, box in HIPPOCAMPUS_BOXES_MM.items()}


def centre_errors(mni_to_scan_world, truth_scan_to_mni) -> dict[str, float]:
    """Distance (mm, in the scan) between where a localiser and the truth put each box centre."""
    truth = np.linalg.inv(truth_scan_to_mni)
    return {side: float(np.linalg.norm(mni_to_scan_world(c) - apply_affine(truth, [c])[0])) for side, c in CENTRES.items()}


def dice_per_side(labels, affine, truth_scan_to_mni, ref, ref_affine) -> dict[str, float]:
    """Dice of the hippocampus (any label) per side, on the template grid, against the template's segmentation."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in ref.shape], indexing="ij"), axis=-1).reshape(-1, 3)
    m = np.linalg.inv(affine) @ np.linalg.inv(truth_scan_to_mni) @ ref_affine
    back = ndimage.map_coordinates(labels, (idx @ m[:3, :3].T + m[:3, 3]).T, order=0).reshape(ref.shape) > 0
    x = (np.arange(ref.shape[0]) * ref_affine[0, 0] + ref_affine[0, 3])[:, None, None]
    out = {}
    for side, on in (("left", x < 0), ("right", x > 0)):
        a, b = back & on, (ref > 0) & on
        out[side] = 2.0 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))
    return out


def sitk_untuned(path: Path) -> tuple[float, callable]:
    """The issue's reference localiser, as SimpleITK's documentation writes it: the scan file registered to
    the template file, Mattes MI affine from a moments start, both shrunk to about 4 mm, one level."""
    fixed = sitk.Cast(sitk.ReadImage(str(mni152_t1_path())), sitk.sitkFloat32)
    moving = sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat32)
    t0 = time.perf_counter()
    shrink = lambda im: sitk.Shrink(im, [max(1, int(round(4.0 / s))) for s in im.GetSpacing()])  # noqa: E731
    fixed, moving = shrink(fixed), shrink(moving)
    init = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(3),
                                             sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.2, seed=0)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(2.0, 1e-3, 200)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetInitialTransform(init, inPlace=False)
    tx = reg.Execute(fixed, moving)
    seconds = time.perf_counter() - t0

    def to_scan(p):  # ITK works in LPS; points go fixed (template) -> moving (scan)
        q = tx.TransformPoint([-float(p[0]), -float(p[1]), float(p[2])])
        return np.array([-q[0], -q[1], q[2]])

    return seconds, to_scan


def ants_affine(array, affine, tpl_array, tpl_affine) -> tuple[float, callable]:
    """ANTsPy's default affine registration of the scan to the template (LPS physical space inside ANTs)."""
    import ants
    import pandas as pd

    def image(arr, aff):
        lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ aff
        sp = np.linalg.norm(lps[:3, :3], axis=0)
        return ants.from_numpy(np.ascontiguousarray(arr, dtype=np.float32), origin=lps[:3, 3].tolist(),
                               spacing=sp.tolist(), direction=lps[:3, :3] / sp)

    fixed, moving = image(tpl_array, tpl_affine), image(array, affine)
    t0 = time.perf_counter()
    result = ants.registration(fixed=fixed, moving=moving, type_of_transform="Affine")
    seconds = time.perf_counter() - t0

    def to_scan(p):  # points go fixed -> moving with the forward transforms
        df = pd.DataFrame({"x": [-p[0]], "y": [-p[1]], "z": [p[2]]})
        out = ants.apply_transforms_to_points(3, df, result["fwdtransforms"])
        return np.array([-out.x[0], -out.y[0], out.z[0]])

    return seconds, to_scan


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scans", type=int, default=6, help="synthetic heads besides the template (default: %(default)s)")
    ap.add_argument("--ants-scans", type=int, default=2, help="scans also localised with ANTsPy (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    have_ants = importlib.util.find_spec("ants") is not None  # optional comparison

    tmp = Path(tempfile.mkdtemp(prefix="segloop-wholehead-"))
    rng = np.random.default_rng(args.seed)
    scans = [("mni152_template", mni152_t1_path(), np.eye(4))]
    for i in range(args.scans):
        truth = random_scan_to_mni(rng)
        array, affine = make_scan(truth, rng, spacing=SPACINGS[i % len(SPACINGS)])
        name = f"head{i}_" + "x".join(f"{s:g}" for s in SPACINGS[i % len(SPACINGS)]) + "mm"
        path = tmp / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(array, affine), str(path))
        scans.append((name, path, truth))

    tpl = load_scan(mni152_t1_path())
    ref = segment_scan(tpl)  # warm-up too: template cache, ONNX session
    rows, alt_sitk, alt_ants = [], [], []
    for name, path, truth in scans:
        t0 = time.perf_counter()
        vol = load_scan(path)
        t_load = time.perf_counter() - t0
        seg = segment_scan(vol)
        t0 = time.perf_counter()
        save_label(seg.labels, vol, tmp / f"{name}_labels.nii.gz")
        t_save = time.perf_counter() - t0
        reg = seg.registration
        mni_to_world = np.linalg.inv(reg.scan_to_mni)
        err = centre_errors(lambda c: apply_affine(mni_to_world, [c])[0], truth)
        dice = dice_per_side(seg.labels, vol.affine, truth, ref.labels, tpl.affine)
        steps = {"load": t_load, **seg.timings, "save": t_save}
        rows.append({"scan": name, "spacing": [round(s, 2) for s in vol.spacing], "steps": steps,
                     "total": sum(steps.values()), "centre_error_mm": err, "dice": dice,
                     "quality": reg.quality})
        s_sec, s_map = sitk_untuned(path)
        alt_sitk.append({"seconds": s_sec, "error": centre_errors(s_map, truth)})
        if have_ants and len(alt_ants) < args.ants_scans and name != "mni152_template":
            a_sec, a_map = ants_affine(vol.array, vol.affine, tpl.array, tpl.affine)
            alt_ants.append({"seconds": a_sec, "error": centre_errors(a_map, truth)})
        print(f"{name:<26} " + " ".join(f"{k} {v:.2f}s" for k, v in steps.items())
              + f" | total {rows[-1]['total']:.2f} s | centre error L {err['left']:.2f} R {err['right']:.2f} mm"
              + f" | Dice L {dice['left']:.3f} R {dice['right']:.3f}", flush=True)

    t0 = time.perf_counter()
    old = predict(tpl, None)
    t_old = time.perf_counter() - t0
    near = np.zeros(tpl.shape, bool)
    for s in ref.sides:
        lo = np.floor(s.corners.min(axis=0)).astype(int)
        hi = np.ceil(s.corners.max(axis=0)).astype(int)
        near[tuple(slice(max(a, 0), b) for a, b in zip(lo, hi))] = True
    old_inside = float((old.labels > 0)[near].sum() / max(1, (old.labels > 0).sum()))

    med = lambda xs: float(np.median(xs))  # noqa: E731
    steps = list(rows[0]["steps"])
    print()
    print(f"{'step':<22}{'median s':>10}")
    for k in steps:
        print(f"{k:<22}{med([r['steps'][k] for r in rows]):>10.3f}")
    total = med([r["total"] for r in rows])
    print(f"{'whole scan':<22}{total:>10.3f}")
    errs = [e for r in rows for e in r["centre_error_mm"].values()]
    dices = [d for r in rows[1:] for d in r["dice"].values()]
    print(f"\nSegLoop localisation: median {med([r['steps']['register to MNI152'] for r in rows]):.2f} s, "
          f"box-centre error median {med(errs):.2f} mm (max {max(errs):.2f}); Dice per side vs the template's "
          f"segmentation median {med(dices):.3f} (min {min(dices):.3f}) on {len(rows) - 1} synthetic heads")
    s_errs = [e for a in alt_sitk for e in a["error"].values()]
    print(f"untuned SimpleITK affine (4 mm, moments start): median {med([a['seconds'] for a in alt_sitk]):.2f} s, "
          f"box-centre error median {med(s_errs):.1f} mm (max {max(s_errs):.1f})")
    result = {"scans": len(rows), "median_total_s": round(total, 3),
              "median_steps_s": {k: round(med([r["steps"][k] for r in rows]), 3) for k in steps},
              "centre_error_mm_median": round(med(errs), 3), "centre_error_mm_max": round(max(errs), 3),
              "dice_per_side_median": round(med(dices), 4), "dice_per_side_min": round(min(dices), 4),
              "sitk_untuned_s_median": round(med([a["seconds"] for a in alt_sitk]), 3),
              "sitk_untuned_error_mm_median": round(med(s_errs), 2), "sitk_untuned_error_mm_max": round(max(s_errs), 2),
              "whole_volume_predict_s": round(t_old, 2), "whole_volume_predict_fraction_in_boxes": round(old_inside, 4)}
    if alt_ants:
        a_errs = [e for a in alt_ants for e in a["error"].values()]
        print(f"ANTsPy affine (default): median {med([a['seconds'] for a in alt_ants]):.1f} s, box-centre error median "
              f"{med(a_errs):.2f} mm on {len(alt_ants)} scans")
        result.update(ants_s_median=round(med([a["seconds"] for a in alt_ants]), 2),
                      ants_error_mm_median=round(med(a_errs), 3))
    else:
        print("ANTsPy affine: not run (pip install antspyx to compare)")
    print(f"model on the whole template by sliding window (no localisation): {t_old:.1f} s, "
          f"{100 * old_inside:.0f} % of its labelled voxels inside the hippocampus boxes")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
