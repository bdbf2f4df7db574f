"""The training loss: Dice + cross-entropy, over a deep-supervision stack when the network gives one.

A network trained with deep supervision (`segloop.model.network.DYNUNET_ARCHITECTURE`) returns, in
training mode, the full-resolution logits and those of deeper decoder levels (interpolated to full size
by MONAI) as one stack; nnU-Net scores every output against the label and sums the losses with weights
1/2^k (k = 0 for full resolution), normalised to sum 1, so that the deeper levels learn a coarse
segmentation early without outweighing the output that is used. nnU-Net downsamples the label to each
level instead of upsampling the logits; MONAI's DynUNet upsamples, so here every output is compared with
the full-resolution label. torch and MONAI are imported when the loss is built, as training does.
"""

from __future__ import annotations


def deep_supervision_weights(outputs: int) -> list[float]:
    """nnU-Net's weights of a deep-supervision stack: 1/2^k for output k, normalised to sum 1.

    Parameters
    ----------
    outputs : int
        Number of outputs in the stack (1 + ``deep_supr_num``); at least 1.

    Returns
    -------
    list of float
        `outputs` weights, the full-resolution output's first; ``[1.0]`` for a single output.

    Raises
    ------
    ValueError
        When `outputs` < 1.

    Examples
    --------
    >>> [round(w, 4) for w in deep_supervision_weights(3)]  # 4/7, 2/7, 1/7
    [0.5714, 0.2857, 0.1429]
    >>> deep_supervision_weights(1)
    [1.0]
    """
    if outputs < 1:
        raise ValueError(f"a deep-supervision stack has at least one output, not {outputs}")
    raw = [0.5 ** k for k in range(outputs)]
    return [w / sum(raw) for w in raw]


def segmentation_loss():
    """Build the training loss: MONAI ``DiceCELoss(to_onehot_y=True, softmax=True, batch=True)``, summed
    over a deep-supervision stack with `deep_supervision_weights`.

    Returns
    -------
    torch.nn.Module
        Called as ``loss(output, target)`` with `target` the label map, float of shape (N, 1, X, Y, Z)
        holding class indices, and `output` either plain logits, float of shape (N, C, X, Y, Z) (then the
        result is exactly DiceCELoss's), or a deep-supervision stack of shape (N, K, C, X, Y, Z)
        (`segloop.model.network.build_network` in training mode), told apart by having one axis more
        than `target`. Returns a scalar tensor.

    Examples
    --------
    >>> import torch
    >>> loss = segmentation_loss()
    >>> y = torch.randint(0, 3, (2, 1, 4, 4, 4)).float()
    >>> logits = torch.randn(2, 3, 4, 4, 4)
    >>> stack = torch.stack([logits, logits], dim=1)  # identical outputs: weights sum to 1
    >>> bool(torch.isclose(loss(stack, y), loss(logits, y)))
    True
    """
    import torch
    from monai.losses import DiceCELoss

    class DeepSupervisionDiceCELoss(torch.nn.Module):
        """DiceCE of plain logits, or nnU-Net's weighted sum of DiceCE over a deep-supervision stack."""

        def __init__(self) -> None:
            super().__init__()
            self.dice_ce = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)

        def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            if output.dim() == target.dim():
                return self.dice_ce(output, target)
            if output.dim() != target.dim() + 1:
                raise ValueError(f"output of shape {tuple(output.shape)} is neither logits nor a deep-supervision "
                                 f"stack for a target of shape {tuple(target.shape)}")
            heads = torch.unbind(output, dim=1)
            weights = deep_supervision_weights(len(heads))
            return sum(w * self.dice_ce(h, target) for w, h in zip(weights, heads))

    return DeepSupervisionDiceCELoss()


def distillation_loss(student, teacher_probs):
    """Knowledge distillation: the Kullback-Leibler divergence from a teacher's softmax to the student's.

    A large network, or an ensemble, that is too slow to ship can teach a small one: the student learns the
    teacher's soft per-voxel probabilities (where a boundary is uncertain, by how much) besides the hard
    labels. Temperature 1: the teacher's own probabilities.

    Parameters
    ----------
    student : torch.Tensor of float, shape (N, C, X, Y, Z) or (N, K, C, X, Y, Z)
        The student's logits; of a deep-supervision stack only the full-resolution output (k = 0) is
        distilled.
    teacher_probs : torch.Tensor of float, shape (N, C, X, Y, Z)
        The teacher's softmax probabilities (no gradient flows into them).

    Returns
    -------
    torch.Tensor
        Scalar: KL(teacher || student) summed over classes, averaged over voxels and cases; 0 when the
        student's softmax equals the teacher's.

    Examples
    --------
    >>> import torch
    >>> t = torch.softmax(torch.randn(2, 3, 4, 4, 4), dim=1)
    >>> float(distillation_loss(torch.log(t), t)) < 1e-6
    True
    >>> float(distillation_loss(torch.zeros(2, 3, 4, 4, 4), t)) > 0
    True
    """
    import torch

    if student.dim() == teacher_probs.dim() + 1:
        student = student[:, 0]
    t = teacher_probs.detach().float()
    log_s = torch.log_softmax(student.float(), dim=1)
    return (t * (torch.log(t.clamp_min(1e-8)) - log_s)).sum(dim=1).mean()
