"""Distillation losses: plain functions of tensors, each citing its source."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hint_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """FitNets hint loss (Romero et al., ICLR 2015): MSE between an adapted student map and the
    teacher's hint map. Spatial sizes are matched by adaptive average pooling to the smaller one.

    Example:
        >>> float(hint_loss(torch.ones(1, 2, 4, 4), torch.zeros(1, 2, 2, 2)))
        1.0
    """
    s, t = match_spatial(student_feat, teacher_feat)
    return F.mse_loss(s, t)


def match_spatial(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pools the larger of two (B, C, H, W) maps to the other's size (IQA inputs vary in size)."""
    ha, wa, hb, wb = *a.shape[-2:], *b.shape[-2:]
    h, w = min(ha, hb), min(wa, wb)
    if (ha, wa) != (h, w):
        a = F.adaptive_avg_pool2d(a, (h, w))
    if (hb, wb) != (h, w):
        b = F.adaptive_avg_pool2d(b, (h, w))
    return a, b


def hcl_loss(
    student_feat: torch.Tensor, teacher_feat: torch.Tensor, levels: tuple[int, ...] = (4, 2, 1)
) -> torch.Tensor:
    """Hierarchical context loss of ReviewKD (Chen et al., CVPR 2021): MSE of the full maps plus MSE
    of 4×4, 2×2 and 1×1 average-pooled maps with weights 1, ½, ¼, ⅛ (only pooled sizes smaller than
    the map), normalised by the total weight.

    Example:
        >>> float(hcl_loss(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)))  # (1 + ⅛·1) / (1 + ⅛): 1×1 only
        1.0
    """
    s, t = match_spatial(student_feat, teacher_feat)
    loss, total, weight = F.mse_loss(s, t), 1.0, 1.0
    h = s.shape[-2]
    for size in levels:
        weight /= 2.0
        if size >= h:
            continue
        loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(s, size), F.adaptive_avg_pool2d(t, size))
        total += weight
    return loss / total


def _pdist(e: torch.Tensor) -> torch.Tensor:
    sq = (e * e).sum(1)
    d = (sq[:, None] + sq[None, :] - 2 * e @ e.t()).clamp(min=1e-12).sqrt()
    return d * (1 - torch.eye(len(e), device=e.device))


def rkd_distance_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    """RKD distance loss (Park et al., CVPR 2019): Smooth-L1 between the batch's pairwise distances,
    each normalised by its mean over distinct pairs.

    Example:
        >>> e = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
        >>> float(rkd_distance_loss(e, 2 * e))  # scale-invariant
        0.0
    """
    with torch.no_grad():
        td = _pdist(teacher_emb.flatten(1))
        td = td / td[td > 0].mean()
    sd = _pdist(student_emb.flatten(1))
    sd = sd / sd[sd > 0].mean()
    return F.smooth_l1_loss(sd, td)


def rkd_angle_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    """RKD angle loss (Park et al., CVPR 2019): Smooth-L1 between the cosines of the angles formed
    by every triplet of the batch's embeddings."""

    def angles(e: torch.Tensor) -> torch.Tensor:
        diff = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=2)
        return torch.bmm(diff, diff.transpose(1, 2)).flatten()

    with torch.no_grad():
        ta = angles(teacher_emb.flatten(1))
    return F.smooth_l1_loss(angles(student_emb.flatten(1)), ta)


def similarity_preserving_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """Similarity-preserving KD (Tung & Mori, ICCV 2019): ‖G_t − G_s‖²_F / b² with G the row-normalised
    batch Gram matrix F·Fᵀ of flattened features (works across different widths).

    Example:
        >>> x = torch.randn(4, 8)
        >>> float(similarity_preserving_loss(x, 3 * x)) < 1e-12
        True
    """
    b = student_feat.shape[0]
    gs = F.normalize(student_feat.flatten(1) @ student_feat.flatten(1).t(), p=2, dim=1)
    gt = F.normalize(teacher_feat.flatten(1) @ teacher_feat.flatten(1).t(), p=2, dim=1)
    return ((gt - gs) ** 2).sum() / (b * b)


def fidelity_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Fidelity loss over all pairs (Tsai et al., ICML 2007; used for IQA by UNIQUE, Zhang et al.
    TIP 2021): 1 − √(p·g) − √((1−p)(1−g)) with p = Φ((qᵢ − qⱼ)/√2) from the predictions and
    g = Φ((tᵢ − tⱼ)/√2) from the targets (MOS or the teacher's scores; targets on the same scale).

    Example:
        >>> t = torch.tensor([0.0, 5.0])
        >>> float(fidelity_loss(t, t)) < 1e-6
        True
    """
    normal = torch.distributions.Normal(0.0, 1.0)
    i, j = torch.triu_indices(len(pred), len(pred), offset=1, device=pred.device)
    p = normal.cdf((pred[i] - pred[j]) / 2**0.5)
    g = normal.cdf((target[i] - target[j]) / 2**0.5)
    return (1 - torch.sqrt(p * g + eps) - torch.sqrt((1 - p) * (1 - g) + eps)).mean()
