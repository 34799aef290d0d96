"""Spatial statistics of feature maps, for quality heads."""

from __future__ import annotations

import torch


def mean_std_pool(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(B, C, H, W) → (B, 2C): per-channel spatial mean, then standard deviation.

    The ``eps`` inside the square root keeps the gradient finite on constant maps.

    Example:
        >>> mean_std_pool(torch.ones(1, 2, 4, 4)).tolist()
        [[1.0, 1.0, 0.0010000000474974513, 0.0010000000474974513]]
    """
    mean = x.mean((2, 3), keepdim=True)
    std = ((x - mean).square().mean((2, 3)) + eps).sqrt()
    return torch.cat([mean.flatten(1), std], 1)
