"""Cost figures for models: parameters, MACs and wall-clock latency.

MACs are counted with PyTorch's own ``torch.utils.flop_counter.FlopCounterMode`` (it counts the
FLOPs of convolutions and matrix products from their shapes; one multiply-accumulate = 2 FLOPs),
so no third-party FLOP counter is needed. Element-wise operations (activations, BN folded at
inference) are not counted, as is the convention in model papers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not).

    Example:
        >>> import kdiqa
        >>> count_params(kdiqa.create_model("iqa_test_tiny")) > 0
        True
    """
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, size: int | tuple[int, int] = 500, batch: int = 1) -> int:
    """Multiply-accumulates of one eval-mode forward pass on a ``batch`` of ``size`` images.

    Args:
        model: any module taking a (B, 3, H, W) tensor.
        size: input side, or (height, width).
        batch: batch size (MACs scale linearly with it).

    Example:
        >>> lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))
        >>> count_macs(lin, size=4)
        480
    """
    h, w = (size, size) if isinstance(size, int) else size
    was_training = model.training
    model.eval()
    param = next(model.parameters(), None)
    x = torch.zeros(batch, 3, h, w, device=param.device if param is not None else "cpu")
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops()) // 2


def measure_latency(fn: Callable[[], object], warmup: int = 5, iters: int = 30, min_seconds: float = 0.0) -> dict:
    """Times ``fn()`` after ``warmup`` calls; runs at least ``iters`` times and ``min_seconds``.

    Returns:
        ``{"p50_ms", "p90_ms", "mean_ms", "iters"}`` over the timed calls.

    Example:
        >>> r = measure_latency(lambda: sum(range(1000)), warmup=1, iters=5)
        >>> sorted(r) == ["iters", "mean_ms", "p50_ms", "p90_ms"] and r["iters"] == 5
        True
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    t_end = time.perf_counter() + min_seconds
    while len(times) < iters or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "mean_ms": float(ms.mean()),
        "iters": len(times),
    }
