"""IQA regression losses: plain functions of tensors (predictions and targets of shape (B,))."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error."""
    return F.l1_loss(pred, target)


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error."""
    return F.mse_loss(pred, target)


def plcc_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(1 − ρ) / 2 with ρ the batch Pearson correlation (Li et al., "Norm-in-Norm", MM 2020).

    Example:
        >>> t = torch.tensor([0.1, 0.5, 0.9])
        >>> abs(float(plcc_loss(2 * t + 1, t))) < 1e-6  # a perfect linear relation costs nothing
        True
    """
    if pred.numel() < 2:
        return pred.sum() * 0
    p, t = pred - pred.mean(), target - target.mean()
    rho = (p * t).sum() / (p.norm() * t.norm() + eps)
    return (1 - rho) / 2


def rank_loss(pred: torch.Tensor, target: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """Pairwise ranking hinge: mean over pairs i≠j of max(0, margin − sign(tᵢ−tⱼ)·(pᵢ−pⱼ)).

    Pairs with equal targets are ignored (as in RankIQA-style margin ranking losses).

    Example:
        >>> float(rank_loss(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0])))
        1.0
    """
    dp = pred[:, None] - pred[None, :]
    sign = torch.sign(target[:, None] - target[None, :])
    mask = sign != 0
    if not mask.any():
        return pred.sum() * 0
    return F.relu(margin - sign * dp)[mask].mean()


def margin_loss(higher: torch.Tensor, lower: torch.Tensor, margin: float = 0.05) -> torch.Tensor:
    """Margin ranking of known pairs: mean of max(0, margin − (higherᵢ − lowerᵢ)) — item i of ``higher``
    should score at least ``margin`` above item i of ``lower`` (RankIQA, Liu et al., ICCV 2017).

    Example:
        >>> round(float(margin_loss(torch.tensor([0.9, 0.5]), torch.tensor([0.2, 0.5]), margin=0.1)), 6)  # 0.1 / 2
        0.05
    """
    return F.relu(margin - (higher - lower)).mean()


LOSSES = {"l1": l1_loss, "mse": mse_loss, "plcc": plcc_loss, "rank": rank_loss}


def combined_loss(pred: torch.Tensor, target: torch.Tensor, weights: dict[str, float]) -> dict[str, torch.Tensor]:
    """Named weighted losses; the key ``"loss"`` holds their sum."""
    out = {}
    for name, w in weights.items():
        if name not in LOSSES:
            raise KeyError(f"unknown loss {name!r}; choose from {sorted(LOSSES)}")
        if w:
            out[name] = w * LOSSES[name](pred, target)
    out["loss"] = sum(out.values()) if out else pred.sum() * 0
    return out
