"""Where test-time crops go: the pure-Python crop rule of :func:`kdiqa.runtime.preprocess.make_views`.

The predictor's views (both backends, and :class:`kdiqa.data.transforms.EvalTransform`, which wraps
``make_views``) take their crop positions from :func:`crop_boxes`, so every backend sees the same views.
"""

from __future__ import annotations

import math
from numbers import Integral


def check_n_crops(n_crops: int) -> None:
    """Rejects a crop count below 1 (any positive count is allowed)."""
    if isinstance(n_crops, bool) or not isinstance(n_crops, Integral) or n_crops < 1:
        raise ValueError(f"n_crops must be a positive integer, got {n_crops!r}")


def crop_boxes(height: int, width: int, crop: int, n_crops: int) -> list[tuple[int, int]]:
    """Top-left corners ``(y, x)`` of ``n_crops`` square crops of side ``crop`` in a ``height`` × ``width`` image.

    The first five are the centre and the four corners (torchvision's five-crop, centre first). More
    crops come from an even ``g`` × ``g`` grid over the valid offsets (``g = max(3, ceil(sqrt(n_crops)))``),
    row by row, skipping its corners and centre, which are already in: 9 crops are the 3 × 3 grid, 25 the
    5 × 5 grid. The count never depends on the image size (a small image just repeats positions).
    The image must already be at least ``crop`` on each side (pad it first).

    Example:
        >>> crop_boxes(40, 48, 32, 5)
        [(4, 8), (0, 0), (0, 16), (8, 0), (8, 16)]
        >>> crop_boxes(40, 48, 32, 9)[5:]
        [(0, 8), (4, 0), (4, 16), (8, 8)]
    """
    check_n_crops(n_crops)
    if height < crop or width < crop:
        raise ValueError(f"a {height}x{width} image is smaller than its {crop} px crops: pad it first")
    dy, dx = height - crop, width - crop
    boxes = [(dy // 2, dx // 2), (0, 0), (0, dx), (dy, 0), (dy, dx)]
    if n_crops > len(boxes):
        g = max(3, math.ceil(math.sqrt(n_crops)))
        last, mid = g - 1, (g - 1) // 2 if g % 2 else None
        for i in range(g):
            for j in range(g):
                if (i in (0, last) and j in (0, last)) or i == j == mid:
                    continue  # a corner or the centre: already in
                boxes.append((i * dy // last, j * dx // last))
    return boxes[:n_crops]
