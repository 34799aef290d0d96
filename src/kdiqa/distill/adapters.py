"""Small modules that map student features onto teacher features (FitNets regressors, ReviewKD ABF).

Shapes are never hard-coded: :func:`probe_features` runs a dummy forward through both models and the
adapters are built from the channel counts it returns.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.iqa import IQAModel


@torch.no_grad()
def probe_features(model: IQAModel, size: int = 64) -> list[tuple[int, int]]:
    """(channels, stride) of every stage map, measured by a dummy forward at ``size``×``size``."""
    was_training = model.training
    model.eval()
    _, feats = model.forward_intermediates(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
    model.train(was_training)
    return [(f.shape[1], size // f.shape[-1]) for f in feats]


class ConvBNAdapter(nn.Module):
    """FitNets-style regressor: k×k conv + BN (+ ReLU) from the student's width to the teacher's."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, relu: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class ABF(nn.Module):
    """Attention-based fusion of ReviewKD (Chen et al., CVPR 2021).

    1×1 conv + BN on the student map; if a deeper fused map is given, it is resized, concatenated,
    and a 1×1 conv to 2 channels + sigmoid gives two attention maps: ``x·a0 + y·a1``. Then a 3×3 conv
    + BN to the teacher's channel count. Returns (output for the loss, fused map for the next level).
    """

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, fuse: bool) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_ch, mid_ch, 1, bias=False), nn.BatchNorm2d(mid_ch))
        self.conv2 = nn.Sequential(nn.Conv2d(mid_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch))
        self.att = nn.Sequential(nn.Conv2d(mid_ch * 2, 2, 1), nn.Sigmoid()) if fuse else None

    def forward(self, x: torch.Tensor, deeper: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv1(x)
        if self.att is not None and deeper is not None:
            y = F.interpolate(deeper, size=x.shape[-2:], mode="nearest")
            a = self.att(torch.cat([x, y], dim=1))
            x = x * a[:, :1] + y * a[:, 1:]
        return self.conv2(x), x
