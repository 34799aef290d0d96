"""A full-resolution detail branch for models that see a pooled image (``ModelConfig.detail``).

A backbone that sees its input average-pooled k × k (``input_pool``) is fast, but pooling averages away
the finest detail, where sensor noise, slight blur and compression artefacts live: pixel noise of σ falls
to σ / k. The branch looks at what the pooling loses. It takes the image's high-pass residual at full
resolution (the normalised image minus its 3 × 3 local mean), runs one learned 3 × 3 convolution with
stride 2, and passes the per-channel mean and standard deviation of the rectified map, layer-normalised
on their own, to the quality head beside the backbone's features. Its cost is about ``27 × width`` MACs
per pair of input pixels: 27 M at 500 × 500 and width 16.

:func:`add_detail` grows a trained model a branch whose head weights start at zero, so the scores are
unchanged until it is trained (a fine-tune from a bundled model).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .pooling import mean_std_pool


def high_pass(x: torch.Tensor) -> torch.Tensor:
    """``x`` minus its 3 × 3 local mean (borders averaged over the pixels inside the image).

    Example:
        >>> float(high_pass(torch.full((1, 3, 8, 8), 0.7)).abs().max()) < 1e-6
        True
    """
    return x - F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class DetailBranch(nn.Module):
    """Normalised full-resolution image (B, 3, H, W) → (B, 2 × ``width``) detail statistics.

    Example:
        >>> branch = DetailBranch(4)
        >>> branch(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 8])
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"detail must be a positive integer width, got {width}")
        self.conv = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(2 * width)
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(mean_std_pool(F.relu(self.conv(high_pass(x)))))


def add_detail(model: nn.Module, width: int) -> None:
    """Gives ``model`` (an :class:`~kdiqa.models.iqa.IQAModel` without one) a detail branch of ``width``
    channels whose features enter the head with zero weights: its scores do not change until it trains.

    Example:
        >>> import kdiqa, torch
        >>> m = kdiqa.create_model("iqa_test_tiny", input_pool=2).eval()
        >>> x = torch.rand(1, 3, 64, 64)
        >>> before = m(x)
        >>> add_detail(m, 4)
        >>> torch.allclose(m(x), before), m.cfg.detail
        (True, 4)
    """
    if model.cfg.detail:
        raise ValueError(f"{model.name} already has a detail branch ({model.cfg.detail} channels)")
    if model.cfg.pruned_shapes:
        raise ValueError("a pruned model cannot take a detail branch")
    fc1 = model.head.fc1
    grown = nn.Linear(fc1.in_features + 2 * width, fc1.out_features).to(fc1.weight.device, fc1.weight.dtype)
    with torch.no_grad():
        grown.weight.zero_()
        grown.weight[:, : fc1.in_features] = fc1.weight
        grown.bias.copy_(fc1.bias)
    model.head.fc1 = grown
    model.detail = DetailBranch(width).to(fc1.weight.device, fc1.weight.dtype)
    model.embed_dim += 2 * width
    model.cfg.detail = width
