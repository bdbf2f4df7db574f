"""The segmentation network, built from the `architecture` entry of a model card.

Two architectures can be named: MONAI's `UNet` (`DEFAULT_ARCHITECTURE`, the shipped model) and MONAI's
`DynUNet`, the nnU-Net architecture (`DYNUNET_ARCHITECTURE`), which can train with deep supervision.
"""

from __future__ import annotations

from typing import Any

#: The 3D U-Net SegLoop trains by default (and ships): MONAI `UNet` with one residual unit per level,
#: 2.45 M parameters, size divisor 16. On a 2-core CPU it takes 1.1 s per step at batch 8, 48x64x48;
#: no residual units train 2.6x faster (0.44 s) but plateaued 1 Dice point lower on this task, and
#: two units (4.8 M parameters, 1.46 s) leave too few epochs for augmentation to pay off in an hour.
DEFAULT_ARCHITECTURE: dict[str, Any] = {
    "name": "monai.networks.nets.UNet",
    "spatial_dims": 3,
    "in_channels": 1,
    "out_channels": 3,
    "channels": [16, 32, 64, 128, 256],
    "strides": [2, 2, 2, 2],
    "num_res_units": 1,
    "norm": "INSTANCE",
    "dropout": 0.0,
}


#: MONAI `DynUNet` (the nnU-Net architecture) as nnU-Net plans it for the Decathlon hippocampus task
#: (crops of about 36x50x36 voxels at 1 mm, trained here with patch 48x64x48): 4 resolution levels with
#: 32-64-128-256 filters, two 3x3x3 convolutions per level, strides 1-2-2-2 (so the bottleneck sees 6x8x6
#: of a 48x64x48 patch), affine instance norm and leaky ReLU (slope 0.01), plain (not residual) blocks.
#: Deep supervision: in training mode the network also returns the logits of the 2 upsampling levels
#: below full resolution (``deep_supr_num``), interpolated to full size, so that the loss
#: (`segloop.training.losses.segmentation_loss`) can weigh them 1/2^k as nnU-Net does; in eval mode
#: (inference, validation, ONNX export) it returns only the full-resolution logits. 5.6 M parameters,
#: size divisor 8. Wider and shallower than `DEFAULT_ARCHITECTURE`: nnU-Net halves an axis only while it
#: keeps at least 4 voxels (three times here), and keeps full resolution in its first level (stride 1)
#: where the U-Net starts with a stride-2 convolution. That costs compute: 189 GFLOP per 48x64x48 sample
#: forward and backward against the U-Net's 3.5, about 22 s per step at batch 8 on a 2-core CPU (the U-Net:
#: 1.1 s), and 1.2 s against 0.12 s for one 48x64x48 ONNX Runtime inference on 2 threads: a GPU recipe.
DYNUNET_ARCHITECTURE: dict[str, Any] = {
    "name": "monai.networks.nets.DynUNet",
    "spatial_dims": 3,
    "in_channels": 1,
    "out_channels": 3,
    "kernel_size": [3, 3, 3, 3],
    "strides": [1, 2, 2, 2],
    "upsample_kernel_size": [2, 2, 2],
    "filters": [32, 64, 128, 256],
    "norm_name": ["INSTANCE", {"affine": True}],
    "act_name": ["leakyrelu", {"inplace": True, "negative_slope": 0.01}],
    "deep_supervision": True,
    "deep_supr_num": 2,
    "res_block": False,
}

UNET = "monai.networks.nets.UNet"
DYNUNET = "monai.networks.nets.DynUNet"
ENSEMBLE = "segloop.ensemble"


def ensemble_architecture(members: list[dict[str, Any]]) -> dict[str, Any]:
    """Make a model-card architecture entry for several networks whose softmax outputs are averaged.

    Parameters
    ----------
    members : list of dict
        Architecture entries of the member networks (at least one); they should share in/out channels.

    Returns
    -------
    dict
        ``{"name": ENSEMBLE, "in_channels", "out_channels", "members"}``, channels taken from the
        first member (``in_channels`` defaults to 1).

    Examples
    --------
    >>> entry = ensemble_architecture([DEFAULT_ARCHITECTURE, DEFAULT_ARCHITECTURE])
    >>> entry["name"], entry["in_channels"], entry["out_channels"], len(entry["members"])
    ('segloop.ensemble', 1, 3, 2)
    """
    return {"name": ENSEMBLE, "in_channels": members[0].get("in_channels", 1),
            "out_channels": members[0].get("out_channels"), "members": members}


def size_divisor(architecture: dict[str, Any]) -> int:
    """Return the size divisor of an architecture: spatial sizes the network accepts must be multiples of it.

    Parameters
    ----------
    architecture : dict
        A model card's architecture entry.

    Returns
    -------
    int
        The product of the ``strides`` (1 when there are none). A stride may also be a list with one
        value per axis (DynUNet's anisotropic strides): then each axis needs the product of its own
        strides, and the divisor is the least common multiple of those per-axis products (for the
        usual powers of two, the largest of them), so that one number makes every axis valid. For an
        ensemble, the least common multiple of its members' divisors.

    Notes
    -----
    The divisor is necessary, not sufficient: a network with instance norm also needs more than one
    voxel at its bottleneck, i.e. at least one axis of twice the divisor (the training patch, which
    every input is padded to, is far larger).

    Examples
    --------
    >>> size_divisor(DEFAULT_ARCHITECTURE), size_divisor(DYNUNET_ARCHITECTURE)
    (16, 8)
    >>> size_divisor(ensemble_architecture([{"strides": [2, 2]}, {"strides": [2, 2, 2]}]))
    8
    >>> size_divisor({"strides": [1, [2, 2, 1], [2, 2, 2], [1, 2, 2]]})  # per axis: 4, 8, 4
    8
    """
    import math

    if architecture.get("name") == ENSEMBLE:
        divs = [size_divisor(m) for m in architecture["members"]]
        return math.lcm(*divs)
    strides = architecture.get("strides", [])
    if not any(isinstance(s, (list, tuple)) for s in strides):
        return math.prod(int(s) for s in strides)
    ndim = next(len(s) for s in strides if isinstance(s, (list, tuple)))
    per_axis = [math.prod(int(s[a]) if isinstance(s, (list, tuple)) else int(s) for s in strides)
                for a in range(ndim)]
    return math.lcm(*per_axis)


def build_network(architecture: dict[str, Any] | None = None):
    """Build the torch module for an architecture (imports torch lazily: inference does not need it).

    Parameters
    ----------
    architecture : dict, optional
        A model card's architecture entry (JSON values: lists, not tuples), `DEFAULT_ARCHITECTURE`
        when None. One of:

        - ``monai.networks.nets.UNet``: keys ``spatial_dims``, ``in_channels``, ``out_channels``,
          ``channels``, ``strides``, ``num_res_units``, ``norm``, optional ``dropout`` (0.0).
        - ``monai.networks.nets.DynUNet``: keys ``spatial_dims``, ``in_channels``, ``out_channels``,
          ``kernel_size``, ``strides`` (ints or per-axis lists, one per level), optional
          ``upsample_kernel_size`` (``strides[1:]``), ``filters`` (nnU-Net's 32, 64, ...),
          ``norm_name``, ``act_name`` (a name or ``[name, {arguments}]``), ``dropout`` (none),
          ``deep_supervision`` (False), ``deep_supr_num`` (1), ``res_block`` (False); see
          `DYNUNET_ARCHITECTURE`.
        - ``segloop.ensemble`` (`ensemble_architecture`) of any mix of these.

    Returns
    -------
    torch.nn.Module
        A network taking float32 images of shape (N, in_channels, X, Y, Z), spatial sizes multiples of
        `size_divisor`. In eval mode every network returns float32 logits of shape
        (N, out_channels, X, Y, Z). In training mode a DynUNet with ``deep_supervision`` returns a stack
        of shape (N, 1 + deep_supr_num, out_channels, X, Y, Z): the full-resolution logits first, then
        those of the deeper upsampling levels, nearest-neighbour interpolated to full size by MONAI.
        An ensemble returns the log of its members' mean softmax (so softmax of its output is the
        mean probability); it is meant for eval mode only.

    Raises
    ------
    ValueError
        When the entry names another architecture, or MONAI rejects the values.
    KeyError
        When a required key is missing.

    Examples
    --------
    >>> import torch
    >>> net = build_network({**DYNUNET_ARCHITECTURE, "filters": [4, 8, 16, 32]})
    >>> x = torch.zeros(2, 1, 16, 16, 8)
    >>> tuple(net.train()(x).shape), tuple(net.eval()(x).shape)
    ((2, 3, 3, 16, 16, 8), (2, 3, 16, 16, 8))
    """
    arch = dict(DEFAULT_ARCHITECTURE if architecture is None else architecture)
    name = arch.pop("name", UNET)
    if name == ENSEMBLE:
        return _ensemble([build_network(m) for m in arch["members"]])
    if name == DYNUNET:
        return _dynunet(arch)
    if name != UNET:
        raise ValueError(f"cannot build {name!r}: only {UNET} and {DYNUNET} architectures (or ensembles of them) "
                         "can be trained here")
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=arch["spatial_dims"],
        in_channels=arch["in_channels"],
        out_channels=arch["out_channels"],
        channels=tuple(arch["channels"]),
        strides=tuple(arch["strides"]),
        num_res_units=arch["num_res_units"],
        norm=arch["norm"],
        dropout=arch.get("dropout", 0.0),
    )


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples MONAI's signatures and layer factories expect (dicts kept)."""
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    return value


def _dynunet(arch: dict[str, Any]):
    """A MONAI DynUNet from an architecture entry without its ``name`` (see `build_network`)."""
    from monai.networks.nets import DynUNet

    strides = _tuples(arch["strides"])
    optional = {k: _tuples(arch[k]) for k in ("filters", "norm_name", "act_name", "dropout") if k in arch}
    return DynUNet(
        spatial_dims=arch["spatial_dims"],
        in_channels=arch["in_channels"],
        out_channels=arch["out_channels"],
        kernel_size=_tuples(arch["kernel_size"]),
        strides=strides,
        upsample_kernel_size=_tuples(arch.get("upsample_kernel_size", strides[1:])),
        deep_supervision=bool(arch.get("deep_supervision", False)),
        deep_supr_num=int(arch.get("deep_supr_num", 1)),
        res_block=bool(arch.get("res_block", False)),
        **optional,
    )


def _ensemble(members: list):
    """A module averaging its members' softmax; it returns log-probabilities, so softmax of its
    output is the mean probability and it drops in wherever a single network's logits are used."""
    import torch

    class SoftmaxEnsemble(torch.nn.Module):
        def __init__(self, nets: list) -> None:
            super().__init__()
            self.members = torch.nn.ModuleList(nets)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            probs = torch.stack([torch.softmax(m(x), dim=1) for m in self.members]).mean(0)
            return torch.log(probs.clamp_min(1e-8))

    return SoftmaxEnsemble(members)
