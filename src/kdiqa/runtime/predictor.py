"""The predictor: one way from image files to scores, for every backend.

A backend (:class:`Backend`) is anything that maps a float32 (B, 3, H, W) batch of RGB in [0, 1] to
normalised scores (B,) and says which views it wants (:class:`~kdiqa.runtime.preprocess.PreprocessConfig`):
the torch model (:class:`kdiqa.predict.TorchBackend`) and ONNX Runtime (:class:`kdiqa.runtime.OnnxScorer`).
:func:`score_paths` and :func:`predict_paths` decode the files (in threads when ``workers`` > 0), make
their views with :func:`~kdiqa.runtime.preprocess.make_views`, batch views of equal size together and
average each image's view scores. Nothing here imports torch.

Example:
    >>> import numpy as np
    >>> from kdiqa.runtime.preprocess import PreprocessConfig
    >>> class Mean:  # a toy backend: the mean brightness of each view
    ...     name, cfg = "mean", PreprocessConfig("mean", score_range=(0.0, 10.0))
    ...     def predict(self, batch):
    ...         return batch.mean(axis=(1, 2, 3))
    >>> round(score_image(Mean(), np.full((8, 8, 3), 255, np.uint8)), 3)
    10.0
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, runtime_checkable

import numpy as np
from tqdm import tqdm

from ..data.io import ImageLoadError
from ..score_io import ScoreResult
from .preprocess import PreprocessConfig, make_views


@runtime_checkable
class Backend(Protocol):
    """What the predictor needs from a model: its views and a batch forward.

    A backend may also have ``max_batch`` (views per forward; ``None`` or absent: all the views of equal
    size in a batch of images go through one forward).
    """

    name: str  # shown in outputs, e.g. "iqa_mobilenetv3_small_050 (onnx int8)"
    cfg: PreprocessConfig  # the test-time views and the output scale

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Normalised scores (B,), higher = better, of a float32 (B, 3, H, W) batch of RGB in [0, 1]."""
        ...


def predict_views(backend: Backend, items: list[tuple[int, np.ndarray]], max_batch: int | None = None) -> dict:
    """``key → normalised scores of its views`` for ``(key, views (V, 3, h, w))`` pairs.

    Views of equal size are run together (at most ``max_batch`` per forward when given), so images of
    different sizes can share a batch.
    """
    by_shape: dict[tuple, list] = {}
    for key, views in items:
        by_shape.setdefault(views.shape[1:], []).append((key, views))
    out = {}
    for group in by_shape.values():
        x = np.concatenate([v for _, v in group])
        step = max_batch or len(x)
        z = np.concatenate([np.asarray(backend.predict(x[i : i + step])).reshape(-1) for i in range(0, len(x), step)])
        start = 0
        for key, views in group:
            out[key] = z[start : start + len(views)]
            start += len(views)
    return out


def score_image(backend: Backend, image) -> float:
    """One image (path, PIL image or HxWxC array) on the backend's output scale: the mean over its views."""
    z = np.asarray(backend.predict(make_views(image, backend.cfg)), dtype=np.float64).mean()
    return float(backend.cfg.to_output_scale(z))


def _decode(path: str, cfg: PreprocessConfig) -> tuple[np.ndarray | None, str | None]:
    try:
        return make_views(path, cfg), None
    except ImageLoadError as exc:
        return None, exc.reason


def _decoded(paths: list[str], cfg: PreprocessConfig, workers: int) -> Iterator[tuple[int, np.ndarray | None, str]]:
    """``(index, views, error)`` per path, in order; ``workers`` threads decode ahead of the consumer."""
    if workers <= 0:
        for i, p in enumerate(paths):
            yield i, *_decode(p, cfg)
        return
    ahead = max(4 * workers, 8)  # bounded read-ahead: memory stays flat on long lists
    with ThreadPoolExecutor(workers, thread_name_prefix="kdiqa-decode") as pool:
        pending: deque = deque()
        for i, p in enumerate(paths):
            pending.append((i, pool.submit(_decode, p, cfg)))
            if len(pending) >= ahead:
                j, fut = pending.popleft()
                yield j, *fut.result()
        while pending:
            j, fut = pending.popleft()
            yield j, *fut.result()


def iter_predictions(
    backend: Backend,
    paths: list[str],
    batch_size: int = 8,
    workers: int = 0,
    progress: bool = False,
    desc: str = "score",
) -> Iterator[tuple[int, float | None, str | None]]:
    """``(index, normalised score, None)`` or ``(index, None, reason)`` per path, in input order.

    ``batch_size`` images are decoded, then their views run through the backend (grouped by size).
    The progress bar (stderr) shows images and images/s.
    """
    max_batch = getattr(backend, "max_batch", None)
    batch: list = []
    with tqdm(total=len(paths), desc=desc, unit="img", disable=not progress, file=sys.stderr) as bar:
        for item in _decoded(paths, backend.cfg, workers):
            batch.append(item)
            if len(batch) == batch_size or item[0] == len(paths) - 1:
                scores = predict_views(backend, [(i, v) for i, v, err in batch if err is None], max_batch)
                for i, _, err in batch:
                    yield (i, None, err) if err is not None else (i, float(np.mean(scores[i], dtype=np.float64)), None)
                bar.update(len(batch))
                batch = []


def score_paths(
    backend: Backend,
    paths: list[str],
    batch_size: int = 8,
    workers: int = 0,
    progress: bool = True,
    on_result: Callable[[ScoreResult], None] | None = None,
) -> list[ScoreResult]:
    """Scores every path on the backend's output scale; a file that cannot be decoded becomes a
    :class:`~kdiqa.score_io.ScoreResult` with ``error`` set (never raised).

    ``on_result`` is called with each result as soon as it is known (e.g. a :class:`~kdiqa.score_io.CsvSink`).
    """
    results = []
    for i, z, err in iter_predictions(backend, paths, batch_size, workers, progress):
        r = ScoreResult(paths[i], error=err) if err else ScoreResult(paths[i], float(backend.cfg.to_output_scale(z)))
        results.append(r)
        if on_result:
            on_result(r)
    return results


def predict_paths(
    backend: Backend, paths: list[str], batch_size: int = 8, workers: int = 0, progress: bool = False
) -> np.ndarray:
    """Normalised scores (mean over views, higher = better), one per path; a bad file raises ``ImageLoadError``."""
    out = np.zeros(len(paths), dtype=np.float64)
    for i, z, err in iter_predictions(backend, paths, batch_size, workers, progress, desc="predict"):
        if err:
            raise ImageLoadError(paths[i], err)
        out[i] = z
    return out
