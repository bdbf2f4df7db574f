"""The segmentation network, built from the `architecture` entry of a model card."""

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
        The product of the ``strides`` (1 when there are none); for an ensemble, the least common
        multiple of its members' divisors.

    Examples
    --------
    >>> size_divisor(DEFAULT_ARCHITECTURE)
    16
    >>> size_divisor(ensemble_architecture([{"strides": [2, 2]}, {"strides": [2, 2, 2]}]))
    8
    """
    if architecture.get("name") == ENSEMBLE:
        import math

        divs = [size_divisor(m) for m in architecture["members"]]
        return math.lcm(*divs)
    div = 1
    for s in architecture.get("strides", []):
        div *= int(s)
    return div


def build_network(architecture: dict[str, Any] | None = None):
    """Build the torch module for an architecture (imports torch lazily: inference does not need it).

    Parameters
    ----------
    architecture : dict, optional
        A model card's architecture entry: a ``monai.networks.nets.UNet`` (keys ``spatial_dims``,
        ``in_channels``, ``out_channels``, ``channels``, ``strides``, ``num_res_units``, ``norm``,
        optional ``dropout``) or an ensemble of such entries. `DEFAULT_ARCHITECTURE` when None.

    Returns
    -------
    torch.nn.Module
        A MONAI UNet returning logits of shape (N, out_channels, X, Y, Z), or for an ensemble a
        module returning the log of its members' mean softmax (so softmax of its output is the
        mean probability).

    Raises
    ------
    ValueError
        When the entry names another architecture.
    KeyError
        When a required key is missing.
    """
    from monai.networks.nets import UNet

    arch = dict(DEFAULT_ARCHITECTURE if architecture is None else architecture)
    if arch.get("name") == ENSEMBLE:
        return _ensemble([build_network(m) for m in arch["members"]])
    if arch.pop("name", "monai.networks.nets.UNet") != "monai.networks.nets.UNet":
        raise ValueError("only monai.networks.nets.UNet architectures can be trained here")
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
