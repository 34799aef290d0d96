"""Scoring images with an exported model on ONNX Runtime (numpy + Pillow + onnxruntime; no torch)."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..data.io import ImageLoadError
from ..score_io import ScoreResult
from .preprocess import PreprocessConfig, make_views


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError("the ONNX backend needs onnxruntime (pip install kdiqa[runtime])") from exc
    return onnxruntime


def session_options(threads: int | None = None):
    """ONNX Runtime session options: all graph optimisations, ``threads`` intra-op threads, one inter-op."""
    ort = _ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    if threads:
        so.intra_op_num_threads = int(threads)
    return so


def open_session(path: str | Path, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` on the CPU; a missing or broken file raises an error naming it."""
    ort = _ort()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX model file not found")
    try:
        return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        raise ValueError(f"{path}: cannot load the ONNX model ({exc})") from exc


class OnnxScorer:
    """An exported kdiqa model (``kdiqa export``) on ONNX Runtime.

    Args:
        folder: the exported folder (``preprocess.json`` + ``model.onnx`` [+ ``model.int8.onnx``]).
        variant: ``"fp32"`` or ``"int8"`` (a file listed in ``preprocess.json``).
        threads: intra-op threads (``None``: ONNX Runtime's default, one per core).
        mode, crop, n_crops: override the exported test-time views (``full``/``center``/``crops``).

    Example:
        >>> from kdiqa.runtime import OnnxScorer
        >>> scorer = OnnxScorer("exported/")  # doctest: +SKIP
        >>> scorer.score("photo.jpg")  # doctest: +SKIP
        61.2
    """

    def __init__(
        self,
        folder: str | Path,
        variant: str = "fp32",
        threads: int | None = None,
        mode: str | None = None,
        crop: int | None = None,
        n_crops: int | None = None,
    ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{folder}: not a folder (expected the output of `kdiqa export`)")
        overrides = {k: v for k, v in (("mode", mode), ("crop", crop), ("n_crops", n_crops)) if v is not None}
        self.cfg = dataclasses.replace(PreprocessConfig.read(self.folder), **overrides)  # re-validated
        if variant not in self.cfg.files:
            raise ValueError(f"{self.folder}: no {variant!r} model (exported: {', '.join(sorted(self.cfg.files))})")
        self.variant = variant
        self.path = self.folder / self.cfg.files[variant]
        self.session = open_session(self.path, threads)

    @property
    def name(self) -> str:
        return f"{self.cfg.model} (onnx {self.variant})"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Normalised scores (B,) of a float32 (B, 3, H, W) batch of RGB in [0, 1]."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got shape {batch.shape}")
        return self.session.run([self.cfg.output_name], {self.cfg.input_name: batch})[0].reshape(-1)

    def predict_views(self, items: list[tuple[int, np.ndarray]], max_batch: int | None = None) -> dict:
        """``key → normalised scores of its views`` for ``(key, views (V,3,h,w))`` pairs; views of equal
        size are batched together (at most ``max_batch`` per run when given)."""
        by_shape: dict[tuple, list] = {}
        for key, views in items:
            by_shape.setdefault(views.shape[1:], []).append((key, views))
        out = {}
        for group in by_shape.values():
            x = np.concatenate([v for _, v in group])
            step = max_batch or len(x)
            z = np.concatenate([self.predict(x[i : i + step]) for i in range(0, len(x), step)])
            start = 0
            for key, views in group:
                out[key] = z[start : start + len(views)]
                start += len(views)
        return out

    def views(self, image) -> np.ndarray:
        """The model's test-time views of one image (path, PIL image or numpy array)."""
        return make_views(image, self.cfg)

    def predict_normalised(self, image) -> float:
        """One image's normalised score (mean over its views), higher = better."""
        return float(self.predict(self.views(image)).mean())

    def score(self, image) -> float:
        """One image's score on the model's output scale (e.g. MOS 0–100 for a CLIVE-trained model)."""
        return float(self.cfg.to_output_scale(self.predict_normalised(image)))

    def predict_paths(self, paths: list[str], batch_size: int = 8) -> np.ndarray:
        """Normalised scores (mean over views), one per path; a bad file raises ``ImageLoadError``."""
        out = np.zeros(len(paths), dtype=np.float64)
        for start in range(0, len(paths), batch_size):
            items = [(i, make_views(paths[i], self.cfg)) for i in range(start, min(start + batch_size, len(paths)))]
            for i, z in self.predict_views(items).items():
                out[i] = float(z.mean())
        return out

    def score_paths(
        self,
        paths: list[str],
        batch_size: int = 8,
        progress: bool = False,
        on_result: Callable[[ScoreResult], None] | None = None,
    ) -> list[ScoreResult]:
        """Scores every path; a file that cannot be decoded becomes a result with ``error`` set.

        ``on_result`` is called with each :class:`~kdiqa.score_io.ScoreResult` as soon as it is known.
        """
        results: list[ScoreResult] = []
        for start in range(0, len(paths), batch_size):
            chunk = list(enumerate(paths[start : start + batch_size], start))
            done, items = [], []
            for i, p in chunk:
                try:
                    items.append((i, make_views(p, self.cfg)))
                except ImageLoadError as exc:
                    done.append((i, ScoreResult(p, error=exc.reason)))
            for i, z in self.predict_views(items).items():
                done.append((i, ScoreResult(paths[i], score=float(self.cfg.to_output_scale(float(z.mean()))))))
            for _, r in sorted(done, key=lambda t: t[0]):
                results.append(r)
                if on_result:
                    on_result(r)
            if progress:
                print(f"\rscore: {min(start + batch_size, len(paths))}/{len(paths)}", end="", file=sys.stderr)
        if progress and paths:
            print(file=sys.stderr)
        return results
