"""Degraded copies of training crops: a self-supervised ranking signal for the labelled stages.

A model trained on MOS of authentically distorted photos (CLIVE) and a teacher trained on the same can
rate a photo with synthetic noise *above* its clean original: noise reads as texture. With
``distill.degrade_weight`` > 0, every labelled crop comes with a copy carrying a synthetic distortion
that only lowers quality (blur, compression, noise, pixelation; levels 3-5 of the 25 × 5 table), and a
margin ranking loss asks the student to score the crop above its copy — the ranking of RankIQA (Liu et
al., ICCV 2017) and of the pretext task, applied beside the MOS loss. No label is used.

The type, level and noise seed are drawn from torch's generator in the loading process, like the
training crop itself, so a run (and its resume) draws the same copies.

Example:
    >>> import torch
    >>> base = [{"image": torch.full((3, 32, 32), 0.5), "score": torch.tensor(0.7)}]
    >>> item = WithDegraded(base, types=("white_noise",), levels=(5, 5))[0]
    >>> item["degraded"].shape, bool((item["degraded"] - item["image"]).abs().mean() > 0.01)
    (torch.Size([3, 32, 32]), True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .distortions import apply_distortion, list_distortions

# Types whose every level from 3 up is a loss of quality (colour, tone and geometric types are left out:
# at some levels or on some photos they can look as good as, or better than, the original).
DEGRADING = (
    "gaussian_blur",
    "lens_blur",
    "motion_blur",
    "jpeg",
    "jpeg2000",
    "white_noise",
    "white_noise_color_component",
    "impulse_noise",
    "multiplicative_noise",
    "pixelate",
)


class WithDegraded(Dataset):
    """Items of ``base`` (dicts with ``image``: a (3, H, W) float tensor in [0, 1]) plus ``degraded``:
    the same crop with one distortion of ``types`` at a level drawn from ``levels`` (inclusive)."""

    def __init__(self, base: Dataset, types: Sequence[str] = DEGRADING, levels: Sequence[int] = (3, 5)) -> None:
        unknown = sorted(set(types) - set(list_distortions()))
        if unknown or not types:
            raise ValueError(f"degrade types must be distortion names (kdiqa list-distortions); got {unknown or types}")
        lo, hi = levels
        if not 1 <= lo <= hi <= 5:
            raise ValueError(f"degrade levels must be 1 <= low <= high <= 5, got {list(levels)}")
        self.base, self.types, self.levels = base, tuple(types), (int(lo), int(hi))

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.base[i])
        kind = self.types[int(torch.randint(len(self.types), ()))]
        level = int(torch.randint(self.levels[0], self.levels[1] + 1, ()))
        seed = int(torch.randint(2**31 - 1, ()))
        pixels = (item["image"].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        out = np.asarray(apply_distortion(pixels, kind, level, seed=seed))
        item["degraded"] = torch.from_numpy(out.copy()).permute(2, 0, 1).float() / 255
        return item
