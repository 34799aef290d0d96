"""Quality maps: where an image is good or bad, as patch-wise scores on a grid.

The image is prepared as for its score (EXIF orientation, the model's ``resize``/``max_short``), then cut
into square patches of ``patch`` pixels every ``stride`` pixels; the last row and column of patches are
aligned with the bottom and right edges, so every pixel is covered. Each patch is scored by the backend as
one view, at its own resolution (the models are fully convolutional), in batches of ``max_batch`` patches.
The map is on the model's output scale (MOS for a CLIVE-trained model).

Cost: ``rows × cols`` forwards of ``patch²`` pixels, i.e. about ``rows·cols·patch² / (H·W)`` times the cost
of scoring the image in ``full`` mode (:attr:`QualityMap.relative_cost`). The default patch is the
model's test-time crop (``PreprocessConfig.crop``), capped at half the shorter side of the prepared image so
that every map has at least 2 × 2 patches, with ``stride = patch // 2``. Nothing here imports torch.

Example:
    >>> import numpy as np
    >>> from kdiqa.runtime.preprocess import PreprocessConfig
    >>> class Mean:  # a toy backend: the mean brightness of each view
    ...     name, cfg = "mean", PreprocessConfig("mean", score_range=(0.0, 100.0))
    ...     def predict(self, batch):
    ...         return batch.mean(axis=(1, 2, 3))
    >>> img = np.zeros((40, 60, 3), np.uint8); img[:, 30:] = 255  # right half white
    >>> m = quality_map(Mean(), img, patch=20, stride=10)
    >>> m.scores.shape, m.ys.tolist(), m.xs.tolist()
    ((3, 5), [0, 10, 20], [0, 10, 20, 30, 40])
    >>> m.scores[0].round(1).tolist()
    [0.0, 0.0, 50.0, 100.0, 100.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..data.io import as_rgb_image, resize_short
from .predictor import predict_views
from .preprocess import PreprocessConfig, pad_to, to_chw_float

MIN_PATCH = 32


def grid_positions(length: int, patch: int, stride: int) -> np.ndarray:
    """Start offsets of patches along one axis: every ``stride`` pixels, plus one flush with the end.

    Example:
        >>> grid_positions(100, 40, 30).tolist(), grid_positions(30, 40, 20).tolist()
        ([0, 30, 60], [0])
    """
    if patch < 1 or stride < 1:
        raise ValueError(f"patch and stride must be positive, got patch={patch}, stride={stride}")
    last = max(0, length - patch)
    pos = list(range(0, last + 1, stride))
    if pos[-1] != last:
        pos.append(last)
    return np.asarray(pos, dtype=np.int64)


def default_patch(cfg: PreprocessConfig, width: int, height: int) -> int:
    """The map's default patch size for a prepared image of ``width × height``: the model's crop, at most
    half the shorter side (never under 32 pixels)."""
    return int(max(MIN_PATCH, min(cfg.crop, min(width, height) // 2)))


@dataclass
class QualityMap:
    """Patch-wise scores of one image and where the patches lie.

    Coordinates are in pixels of the prepared image (``size``), which is the input scaled by ``scale``.
    """

    scores: np.ndarray  # (rows, cols) float64 on the model's output scale
    ys: np.ndarray  # (rows,) top edge of each row of patches
    xs: np.ndarray  # (cols,) left edge of each column of patches
    patch: int
    stride: int
    size: tuple[int, int]  # prepared image (width, height)
    original_size: tuple[int, int]  # input image (width, height)
    score_range: tuple[float, float]
    model: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        return self.scores.shape

    @property
    def scale(self) -> float:
        """Prepared size / input size (1.0 when the image was not resized)."""
        return self.size[0] / self.original_size[0]

    @property
    def n_patches(self) -> int:
        return int(self.scores.size)

    @property
    def relative_cost(self) -> float:
        """Pixels run through the model for the map / pixels of one ``full``-mode score."""
        return self.n_patches * self.patch**2 / (self.size[0] * self.size[1])

    def dense(self) -> np.ndarray:
        """A (height, width) map of the prepared image: each pixel is the mean score of the patches covering it."""
        w, h = self.size
        total = np.zeros((max(h, self.patch), max(w, self.patch)))
        count = np.zeros_like(total)
        for i, y in enumerate(self.ys):
            for j, x in enumerate(self.xs):
                total[y : y + self.patch, x : x + self.patch] += self.scores[i, j]
                count[y : y + self.patch, x : x + self.patch] += 1
        return (total / np.maximum(count, 1))[:h, :w]

    def to_json(self) -> dict:
        """A JSON-ready description: the grid (row-major, output scale) and its geometry."""
        return {
            "model": self.model,
            "scores": np.round(self.scores, 4).tolist(),
            "rows": int(self.shape[0]),
            "cols": int(self.shape[1]),
            "ys": self.ys.tolist(),
            "xs": self.xs.tolist(),
            "patch": self.patch,
            "stride": self.stride,
            "size": list(self.size),
            "original_size": list(self.original_size),
            "scale": self.scale,
            "score_range": list(self.score_range),
            "min": float(self.scores.min()),
            "max": float(self.scores.max()),
            "mean": float(self.scores.mean()),
        }


def prepare(image, cfg: PreprocessConfig):
    """The image as the model sees it before its views are cut: RGB, ``resize``d, ``max_short`` applied.

    Returns ``(prepared PIL image, input (width, height))``.
    """
    img = as_rgb_image(image)
    original = img.size
    img = resize_short(img, cfg.resize)
    if cfg.max_short and min(img.size) > cfg.max_short:
        img = resize_short(img, cfg.max_short)
    return img, original


@dataclass
class MapPlan:
    """What a quality map runs through the model: the prepared image, its patches and their grid."""

    prepared: Image.Image
    original_size: tuple[int, int]
    views: np.ndarray  # (rows·cols, 3, patch, patch) float32
    ys: np.ndarray
    xs: np.ndarray
    patch: int
    stride: int

    def result(self, z: np.ndarray, cfg: PreprocessConfig, model: str = "") -> QualityMap:
        """The :class:`QualityMap` from the patches' normalised scores ``z`` (rows·cols,)."""
        scores = np.asarray(cfg.to_output_scale(np.asarray(z, dtype=np.float64).reshape(-1)))
        grid = scores.reshape(len(self.ys), len(self.xs))
        size = self.prepared.size
        return QualityMap(
            grid, self.ys, self.xs, self.patch, self.stride, size, self.original_size, cfg.score_range, model
        )


def plan_map(image, cfg: PreprocessConfig, patch: int | None = None, stride: int | None = None) -> MapPlan:
    """Prepares ``image`` as for its score and cuts its patches (defaults: :func:`default_patch`, half the patch)."""
    img, original = prepare(image, cfg)
    patch = int(patch or default_patch(cfg, *img.size))
    stride = int(stride or max(1, patch // 2))
    w, h = img.size
    ys, xs = grid_positions(h, patch, stride), grid_positions(w, patch, stride)
    a = pad_to(to_chw_float(img), patch)  # an image smaller than a patch is padded as for crops
    views = np.ascontiguousarray(np.stack([a[:, y : y + patch, x : x + patch] for y in ys for x in xs]))
    return MapPlan(img, original, views, ys, xs, patch, stride)


def quality_map(backend, image, patch: int | None = None, stride: int | None = None, max_batch: int = 32) -> QualityMap:
    """The :class:`QualityMap` of one image (path, PIL image or HxWxC array) with any predictor backend.

    Args:
        backend: a :class:`~kdiqa.runtime.predictor.Backend` (torch or ONNX Runtime).
        patch: patch size in pixels of the prepared image (default: :func:`default_patch`).
        stride: grid step in pixels (default: ``patch // 2``).
        max_batch: patches per forward pass.
    """
    plan = plan_map(image, backend.cfg, patch, stride)
    z = predict_views(backend, [(0, plan.views)], max(1, int(max_batch)))[0]
    return plan.result(z, backend.cfg, backend.name)
