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
    """Augment a batch of training patches: affine, left-right flip, noise, blur, brightness, low
    resolution and gamma, each case drawing its own parameters, in MONAI's recipe order.

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
