"""Segmentation losses for logits ``(B, C, X, Y, Z)`` and integer labels ``(B, 1, X, Y, Z)``.

Two choices, both inside MONAI's ``DeepSupervisionLoss`` (see :func:`build_loss`):

``"dice_ce"``
    MONAI ``DiceCELoss(softmax=True, to_onehot_y=True)``: soft Dice over all classes plus
    cross-entropy, equal weights (the nnU-Net default).

``"composite"``
    The 3D U-Net seed's composite loss, ``0.3 * Dice + 0.3 * BCE + 0.4 * FocalTversky``, on softmax
    probabilities ``p`` and one-hot targets ``g``:

    * Dice: MONAI ``DiceLoss`` on the foreground classes (liver and tumour), batch-wise.
    * BCE: mean binary cross-entropy of every class channel, ``-[g log p + (1 - g) log(1 - p)]``.
    * Focal Tversky on the tumour channel only (Abraham and Khan, ISBI 2019,
      arXiv:1810.07842): ``TI = TP / (TP + alpha * FN + beta * FP)`` with ``alpha = 0.7`` (false
      negatives, the missed small lesions, cost more) and ``beta = 0.3``, and
      ``FTL = (1 - TI) ** (1 / gamma)`` with ``gamma = 4/3``. Built on MONAI ``TverskyLoss``, whose
      own ``alpha`` weighs false *positives* and ``beta`` false negatives, hence the swap below.
      Computed batch-wise so that a patch without tumour does not dominate.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from monai.losses import DeepSupervisionLoss, DiceCELoss, DiceLoss, TverskyLoss
from torch.nn.modules.loss import _Loss

from synth.labels import IGNORE, Label

__all__ = ["LOSSES", "CompositeLoss", "FocalTverskyLoss", "IgnoreRegion", "build_loss",
           "deep_supervision_weights", "head_outputs"]

LOSSES = ("dice_ce", "composite")


class FocalTverskyLoss(torch.nn.Module):
    """``(1 - TI) ** (1 / gamma)`` on one probability channel; see the module docstring.

    Args:
        alpha: weight of false negatives (0.7).
        beta: weight of false positives (0.3).
        gamma: focal parameter (4/3); ``gamma = 1`` gives the plain Tversky loss.
    """

    def __init__(self, alpha: float = 0.7, beta: float = 0.3, gamma: float = 4.0 / 3.0):
        super().__init__()
        if alpha < 0 or beta < 0 or alpha + beta <= 0 or gamma <= 0:
            raise ValueError(f"need alpha, beta >= 0 with a positive sum and gamma > 0; "
                             f"got alpha={alpha}, beta={beta}, gamma={gamma}")
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        # MONAI's TverskyLoss: alpha weighs false positives, beta false negatives.
        self.tversky = TverskyLoss(alpha=beta, beta=alpha, batch=True, reduction="mean")

    def forward(self, probability: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``probability`` and binary ``target`` both ``(B, 1, X, Y, Z)``."""
        # The clamp keeps the gradient of x ** 0.75 finite at a perfect prediction.
        return self.tversky(probability, target).clamp_min(1e-6) ** (1.0 / self.gamma)


class CompositeLoss(torch.nn.Module):
    """``0.3 Dice + 0.3 BCE + 0.4 Focal Tversky (tumour channel)`` on softmax probabilities."""

    def __init__(self, weights=(0.3, 0.3, 0.4), tumor_channel: int = Label.TUMOR,
                 alpha: float = 0.7, beta: float = 0.3, gamma: float = 4.0 / 3.0):
        super().__init__()
        self.weights = tuple(float(w) for w in weights)
        self.tumor_channel = tumor_channel
        self.dice = DiceLoss(include_background=False, batch=True)
        self.focal_tversky = FocalTverskyLoss(alpha, beta, gamma)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        classes = logits.shape[1]
        if classes <= self.tumor_channel:
            raise ValueError(f"composite loss needs a tumour channel {self.tumor_channel}; "
                             f"logits have {classes} channels")
        logits = logits.float()
        onehot = F.one_hot(target[:, 0].long(), classes).movedim(-1, 1).float()
        log_p = F.log_softmax(logits, dim=1)
        p = log_p.exp()
        dice = self.dice(p, onehot)
        # log(1 - p) from the other classes' probabilities: stable where p is close to 1.
        log_not_p = torch.log((1.0 - p).clamp_min(1e-7))
        bce = -(onehot * log_p + (1.0 - onehot) * log_not_p).mean()
        t = self.tumor_channel
        ftl = self.focal_tversky(p[:, t:t + 1], onehot[:, t:t + 1])
        w_dice, w_bce, w_ftl = self.weights
        return w_dice * dice + w_bce * bce + w_ftl * ftl


class IgnoreRegion(torch.nn.Module):
    """``base`` where the target holds no :data:`synth.labels.IGNORE` voxel; otherwise soft Dice
    (batch-wise, all classes) plus cross-entropy over the other voxels only, the terms of
    ``"dice_ce"`` (the ignored voxels are removed from both the prediction and the target, so
    they add nothing to any sum). Used when a model must not learn from a host's real tumours."""

    def __init__(self, base: torch.nn.Module):
        super().__init__()
        self.base = base
        self.dice = DiceLoss(include_background=True, batch=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ignored = target == IGNORE
        if not bool(ignored.any()):
            return self.base(logits, target)
        if not isinstance(self.base, DiceCELoss):
            raise ValueError("ignored voxels (a host's own tumours) are supported with the 'dice_ce' loss only")
        keep = (~ignored).float()
        labels = torch.where(ignored, torch.zeros_like(target), target)[:, 0].long()
        onehot = F.one_hot(labels, logits.shape[1]).movedim(-1, 1).float() * keep
        probability = torch.softmax(logits.float(), dim=1) * keep
        cross_entropy = F.cross_entropy(logits.float(), torch.where(ignored[:, 0], IGNORE, labels),
                                        ignore_index=IGNORE)
        return self.dice(probability, onehot) + cross_entropy


def deep_supervision_weights(heads: int) -> list[float]:
    """``1, 1/2, 1/4, ...`` for ``heads`` outputs, normalised to sum to 1."""
    raw = [0.5 ** i for i in range(heads)]
    total = sum(raw)
    return [w / total for w in raw]


def head_outputs(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
    """What the loss takes from the network: plain logits ``(B, C, X, Y, Z)`` as they are, and
    DynUNet's deep-supervision stack ``(B, heads, C, X, Y, Z)`` (every head already upsampled to
    the patch) as the list of heads that MONAI's ``DeepSupervisionLoss`` weighs. Checks shapes."""
    if target.ndim != 5:
        raise ValueError(f"target must be (B, 1, X, Y, Z) integer labels; got shape {tuple(target.shape)}")
    if logits.ndim == 5:
        return logits
    if logits.ndim != 6:
        raise ValueError(f"logits must be (B, C, X, Y, Z) or a deep-supervision stack "
                         f"(B, heads, C, X, Y, Z); got shape {tuple(logits.shape)}")
    return list(torch.unbind(logits, dim=1))


def build_loss(name: str = "dice_ce", *, heads: int = 1) -> DeepSupervisionLoss:
    """The loss called ``name`` (one of :data:`LOSSES`) in MONAI's ``DeepSupervisionLoss``.

    The returned module takes ``(outputs, target)``: :func:`head_outputs` of the logits (one
    tensor, or a list of ``heads`` deep-supervision heads, weighted by
    :func:`deep_supervision_weights`) and integer labels ``(B, 1, X, Y, Z)``; it returns a scalar.

    Raises:
        ValueError: for an unknown name, listing the choices.
    """
    base: torch.nn.Module
    if name == "dice_ce":
        base = DiceCELoss(softmax=True, to_onehot_y=True, batch=True)
    elif name == "composite":
        base = CompositeLoss()
    else:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    # MONAI annotates the loss as torch's _Loss but only calls it: any loss module (CompositeLoss) works.
    return DeepSupervisionLoss(cast(_Loss, IgnoreRegion(base)), weights=deep_supervision_weights(heads))
