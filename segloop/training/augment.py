"""Training augmentation applied to a whole batch at once, on the device the network trains on.

`segloop.training.loop` augments each case with MONAI's dictionary transforms, one case at a time, on
the CPU (`AugmentEngine.MONAI`, the recipe of the shipped model). On a GPU that loop is the bottleneck:
some 70 ms of Python and CPU work per case against a few milliseconds for the network's step, so a
fast accelerator mostly waits. `augment_batch` applies the same transforms with the same parameter
ranges and probabilities to a (N, 1, X, Y, Z) batch with a handful of torch calls (one
`torch.nn.functional.affine_grid`/`grid_sample` for every rotated or scaled case, grouped convolutions
for the blur), wherever the batch lives (`AugmentEngine.BATCHED`).

Every random number is drawn from the run's own `numpy.random.Generator` (noise from a torch generator
seeded from it), so a run stopped and resumed continues the same random stream, with no state beyond
what `segloop.training.loop.capture_random_state` already saves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np


class AugmentEngine(str, Enum):
    """Where and how the training augmentation runs (`TrainConfig.augmentation`)."""

    #: MONAI dictionary transforms, one case at a time, on the CPU (the shipped model's recipe).
    MONAI = "monai"
    #: The same transforms on the whole batch, on the training device (`augment_batch`).
    BATCHED = "batched"


@dataclass(frozen=True)
class AugmentParams:
    """Probabilities and ranges of the augmentation; the defaults are the MONAI recipe's.

    Only left-right flips (RAS axis 0): the two hippocampi mirror each other, while flipping the
    anterior-posterior axis would swap the labels' meaning.
    """

    p_affine: float = 0.3
    rotate: float = 0.35  # radians, uniform in +-rotate about each axis
    scale: float = 0.15  # scale factor uniform in 1 +- scale along each axis
    p_flip: float = 0.5
    p_noise: float = 0.15
    noise_std: float = 0.1  # the noise's standard deviation is uniform in [0, noise_std]
    p_blur: float = 0.15
    blur_sigma: tuple[float, float] = (0.5, 1.0)  # voxels, drawn per axis
    p_scale_intensity: float = 0.15
    intensity_factor: float = 0.25  # intensities times 1 + uniform(-f, f)
    p_low_res: float = 0.15
    low_res_zoom: tuple[float, float] = (0.5, 1.0)
    p_gamma: float = 0.15
    gamma: tuple[float, float] = (0.7, 1.5)
    # Acquisition at a coarser resolution (SynthSeg-style; off in the shipped recipe): the patch as a scanner
    # with bigger voxels would have imaged it, back on the training grid (`simulate_resolution`), while the
    # labels stay sharp, so the model learns to segment coarse scans at their true size.
    p_resolution: float = 0.0
    p_thick_slices: float = 0.5  # of those: thick slices along one random axis; else coarse in every axis
    coarse_factor: tuple[float, float] = (1.5, 2.5)  # voxel size in training voxels (1 mm: 1.5-2.5 mm)
    thick_factor: tuple[float, float] = (3.0, 5.0)  # slice thickness in training voxels (1 mm: 3-5 mm slices)


#: Nothing happens with these: every probability is 0.
NO_AUGMENTATION = AugmentParams(p_affine=0, p_flip=0, p_noise=0, p_blur=0, p_scale_intensity=0, p_low_res=0, p_gamma=0)


def rotation_scale_matrix(angles: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The 3x3 matrix mapping an output voxel offset (from the patch centre) to the sampled input offset.

    Parameters
    ----------
    angles : np.ndarray of float, shape (3,)
        Rotation in radians about axes 0, 1 and 2, applied in that order.
    scales : np.ndarray of float, shape (3,)
        Scale of the sampling coordinates along each axis (above 1: the anatomy looks smaller).

    Returns
    -------
    np.ndarray of float64, shape (3, 3)
        ``R2 @ R1 @ R0 @ diag(scales)`` in (X, Y, Z) voxel axes.

    Examples
    --------
    >>> rotation_scale_matrix(np.zeros(3), np.ones(3)).tolist() == np.eye(3).tolist()
    True
    """
    out = np.diag(np.asarray(scales, np.float64))
    for axis, a in enumerate(angles):
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = math.cos(a), -math.sin(a), math.sin(a), math.cos(a)
        out = r @ out
    return out


def _theta(matrices: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """`affine_grid` thetas (N, 3, 4) for voxel-space matrices (N, 3, 3) about the patch centre.

    `affine_grid` works in normalised coordinates ordered (Z, Y, X) for a (N, C, X, Y, Z) tensor, with
    -1 and 1 at the outer edges of the patch (``align_corners=False``), so a voxel-space matrix A
    becomes D^-1 P A P D, P reversing the axes and D the half sizes in that order.
    """
    half = np.asarray(shape[::-1], np.float64) / 2.0
    a = matrices[:, ::-1, ::-1]
    theta = np.zeros((len(matrices), 3, 4))
    theta[:, :, :3] = a * half[None, None, :] / half[None, :, None]
    return theta


def _blur(x, sigmas: np.ndarray):
    """Gaussian blur of each case with its own sigma per axis; x (n, 1, X, Y, Z), sigmas (n, 3)."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    radius = int(math.ceil(3 * float(sigmas.max())))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    out = x.reshape(1, n, *x.shape[2:])
    for axis in range(3):
        k = np.exp(-0.5 * (offsets[None, :] / sigmas[:, axis:axis + 1]) ** 2)
        k /= k.sum(axis=1, keepdims=True)
        shape = [n, 1, 1, 1, 1]
        shape[2 + axis] = len(offsets)
        weight = torch.as_tensor(k, dtype=x.dtype, device=x.device).reshape(shape)
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        out = F.conv3d(F.pad(out, pad, mode="replicate"), weight, groups=n)
    return out.reshape(x.shape)


def _low_res(x, zoom: float):
    """One case (1, 1, X, Y, Z) downsampled (nearest) by `zoom` and brought back (trilinear)."""
    import torch.nn.functional as F

    size = x.shape[2:]
    small = [max(1, int(round(s * zoom))) for s in size]
    return F.interpolate(F.interpolate(x, size=small, mode="nearest-exact"), size=size, mode="trilinear",
                         align_corners=False)


def simulate_resolution(x, factors):
    """A patch as a scanner with `factors` times bigger voxels would have imaged it, on the patch's own grid.

    Each coarse axis is blurred with the slice profile (a Gaussian whose FWHM is the coarse voxel),
    sampled at the coarse spacing, and interpolated back (trilinear), as inference resamples a coarse
    scan's box at the card's spacing.

    Parameters
    ----------
    x : torch.Tensor of float, shape (1, 1, X, Y, Z)
        One image patch.
    factors : sequence of 3 float
        Coarse voxel size per axis in patch voxels (1: that axis untouched).

    Returns
    -------
    torch.Tensor of float, shape (1, 1, X, Y, Z)

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(1, 1, 16, 16, 16)
    >>> x[..., 8] = 1.0  # one bright slice across z
    >>> y = simulate_resolution(x, (1.0, 1.0, 4.0))
    >>> tuple(y.shape), bool(y[..., 8].max() < 0.6), bool(torch.allclose(y.sum(), x.sum(), rtol=0.3))
    ((1, 1, 16, 16, 16), True, True)
    """
    import torch.nn.functional as F

    factors = np.asarray(factors, dtype=np.float64)
    sigmas = np.where(factors > 1, factors / 2.3548, 1e-3)[None, :]  # FWHM = the coarse voxel
    blurred = _blur(x, sigmas)
    size = tuple(int(v) for v in x.shape[2:])
    small = [max(2, int(round(n / f))) for n, f in zip(size, factors)]
    coarse = F.interpolate(blurred, size=small, mode="trilinear", align_corners=False)
    return F.interpolate(coarse, size=size, mode="trilinear", align_corners=False)


def resolution_factors(rng: np.random.Generator, n: int, params: AugmentParams) -> np.ndarray:
    """Coarse voxel size per case and axis (n, 3) in training voxels; all 1 for a case left as it is.

    Draws a fixed amount of random numbers for a given n.
    """
    applied = rng.random(n) < params.p_resolution
    thick = rng.random(n) < params.p_thick_slices
    coarse = rng.uniform(*params.coarse_factor, n)
    slab = rng.uniform(*params.thick_factor, n)
    axis = rng.integers(0, 3, n)
    out = np.ones((n, 3))
    for i in np.flatnonzero(applied):
        if thick[i]:
            out[i, axis[i]] = slab[i]
        else:
            out[i, :] = coarse[i]
    return out


def _gamma(x, gammas):
    """MONAI's AdjustContrast with retain_stats, per case: x (n, 1, X, Y, Z), gammas (n,)."""
    dims = (1, 2, 3, 4)
    mean, std = x.mean(dim=dims, keepdim=True), x.std(dim=dims, keepdim=True)
    lo = x.amin(dim=dims, keepdim=True)
    rng = x.amax(dim=dims, keepdim=True) - lo
    g = gammas.reshape(-1, 1, 1, 1, 1)
    out = ((x - lo) / (rng + 1e-7)).clamp_min(0) ** g * rng + lo
    return (out - out.mean(dim=dims, keepdim=True)) / (out.std(dim=dims, keepdim=True) + 1e-8) * std + mean


def augment_batch(image, label, rng: np.random.Generator, params: AugmentParams = AugmentParams()):
    """Augment a batch of training patches: affine, left-right flip, coarser acquisition (when
    ``params.p_resolution`` > 0), noise, blur, brightness, low resolution and gamma, each case drawing its
    own parameters, in MONAI's recipe order.

    Parameters
    ----------
    image : torch.Tensor of float32, shape (N, 1, X, Y, Z)
        Normalised image patches (RAS voxel order), on any device.
    label : torch.Tensor of float32, shape (N, 1, X, Y, Z)
        Their label maps (integer values), on the same device.
    rng : np.random.Generator
        Source of every random choice (the training run's generator).
    params : AugmentParams, optional
        Probabilities and ranges; the defaults are `segloop.training.loop`'s MONAI recipe.

    Returns
    -------
    image : torch.Tensor of float32, shape (N, 1, X, Y, Z)
        Augmented images; outside the rotated patch 0.
    label : torch.Tensor of float32, shape (N, 1, X, Y, Z)
        Labels moved with the images (nearest neighbour: only values present in `label`, or 0).

    Notes
    -----
    The random numbers are drawn in a fixed order and amount for a given N, whatever is selected, so
    a batch's draws never depend on an earlier batch's choices.
    """
    import torch
    import torch.nn.functional as F

    n, shape = image.shape[0], tuple(image.shape[2:])
    u = rng.random((7, n))  # one "is it applied" draw per transform and case
    angles = rng.uniform(-params.rotate, params.rotate, (n, 3))
    scales = rng.uniform(1 - params.scale, 1 + params.scale, (n, 3))
    noise_std = rng.uniform(0, params.noise_std, n)
    noise_seed = int(rng.integers(0, 2**63 - 1))
    sigmas = rng.uniform(*params.blur_sigma, (n, 3))
    factors = rng.uniform(-params.intensity_factor, params.intensity_factor, n)
    zooms = rng.uniform(*params.low_res_zoom, n)
    gammas = rng.uniform(*params.gamma, n)

    # drawn after the others and only when used, so runs without it keep their random stream exactly
    resolution = resolution_factors(rng, n, params) if params.p_resolution > 0 else np.ones((n, 3))

    image, label = image.clone(), label.clone()
    sel = np.flatnonzero(u[0] < params.p_affine)
    if len(sel):
        mats = np.stack([rotation_scale_matrix(angles[i], scales[i]) for i in sel])
        theta = torch.as_tensor(_theta(mats, shape), dtype=image.dtype, device=image.device)
        grid = F.affine_grid(theta, [len(sel), 1, *shape], align_corners=False)
        idx = torch.as_tensor(sel, device=image.device)
        image[idx] = F.grid_sample(image[idx], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        label[idx] = F.grid_sample(label[idx], grid, mode="nearest", padding_mode="zeros", align_corners=False)
    flip = torch.as_tensor(u[1] < params.p_flip, device=image.device).reshape(-1, 1, 1, 1, 1)
    image = torch.where(flip, image.flip(2), image)
    label = torch.where(flip, label.flip(2), label)
    for i in np.flatnonzero((resolution > 1).any(axis=1)):  # acquired coarser; the labels stay sharp
        image[i:i + 1] = simulate_resolution(image[i:i + 1], resolution[i])
    sel = np.flatnonzero(u[2] < params.p_noise)
    if len(sel):
        gen = torch.Generator(device=image.device).manual_seed(noise_seed)
        noise = torch.randn((len(sel), *image.shape[1:]), generator=gen, device=image.device, dtype=image.dtype)
        std = torch.as_tensor(noise_std[sel], dtype=image.dtype, device=image.device).reshape(-1, 1, 1, 1, 1)
        image[torch.as_tensor(sel, device=image.device)] += noise * std
    sel = np.flatnonzero(u[3] < params.p_blur)
    if len(sel):
        idx = torch.as_tensor(sel, device=image.device)
        image[idx] = _blur(image[idx], sigmas[sel])
    scale = np.where(u[4] < params.p_scale_intensity, 1 + factors, 1.0)
    image = image * torch.as_tensor(scale, dtype=image.dtype, device=image.device).reshape(-1, 1, 1, 1, 1)
    for i in np.flatnonzero(u[5] < params.p_low_res):
        image[i:i + 1] = _low_res(image[i:i + 1], float(zooms[i]))
    sel = np.flatnonzero(u[6] < params.p_gamma)
    if len(sel):
        idx = torch.as_tensor(sel, device=image.device)
        image[idx] = _gamma(image[idx], torch.as_tensor(gammas[sel], dtype=image.dtype, device=image.device))
    return image, label


def monai_resolution_transform(params: AugmentParams, keys: str = "image"):
    """`simulate_resolution` as a MONAI dictionary transform for the per-case pipeline ("monai" engine).

    Its random numbers come from MONAI's per-transform RandomState (``self.R``), seeded with the pipeline
    and saved with the run like the others, so a resumed run continues exactly.
    """
    import torch
    from monai.transforms import MapTransform, RandomizableTransform

    class RandSimulateResolutiond(RandomizableTransform, MapTransform):
        def __init__(self) -> None:
            RandomizableTransform.__init__(self, prob=1.0)
            MapTransform.__init__(self, keys)
            self.factors = np.ones(3)

        def randomize(self, data=None) -> None:
            super().randomize(None)
            draws = self.R.random(3)  # applied?, thick?, axis; then the sizes
            sizes = self.R.uniform(0, 1, 2)
            self.factors = np.ones(3)
            if draws[0] >= params.p_resolution:
                return
            if draws[1] < params.p_thick_slices:
                lo, hi = params.thick_factor
                self.factors[min(int(draws[2] * 3), 2)] = lo + (hi - lo) * sizes[1]
            else:
                lo, hi = params.coarse_factor
                self.factors[:] = lo + (hi - lo) * sizes[0]

        def __call__(self, data):
            d = dict(data)
            self.randomize()
            if (self.factors > 1).any():
                for key in self.key_iterator(d):
                    img = torch.as_tensor(d[key], dtype=torch.float32)
                    out = simulate_resolution(img[None], self.factors)[0]
                    d[key] = type(d[key])(out) if not isinstance(d[key], np.ndarray) else out.numpy()
            return d

    return RandSimulateResolutiond()
