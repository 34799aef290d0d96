"""The ONNX Runtime backend: an exported model (numpy + Pillow + onnxruntime; no torch)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..models.pretrained import ONNX_SUBDIR, is_pretrained, resolve_name, weights_folder
from .predictor import score_image
from .preprocess import PREPROCESS_NAME, PreprocessConfig
from .qmap import QualityMap, quality_map


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
    """An exported kdiqa model (``kdiqa export``) on ONNX Runtime: a :class:`~kdiqa.runtime.predictor.Backend`.

    Many files: :func:`kdiqa.runtime.score_paths` / :func:`kdiqa.runtime.predict_paths` with this backend.

    Args:
        folder: the exported folder (``preprocess.json`` + ``model.onnx`` [+ ``model.int8.onnx``]), or a
            bundled name or alias (``default``) whose installation ships an ``onnx/`` export.
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
        self.folder = resolve_onnx_folder(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{folder}: not a folder (expected the output of `kdiqa export`)")
        overrides = {k: v for k, v in (("mode", mode), ("crop", crop), ("n_crops", n_crops)) if v is not None}
        self.cfg = dataclasses.replace(PreprocessConfig.read(self.folder), **overrides)  # re-validated
        if variant not in self.cfg.files:
            raise ValueError(f"{self.folder}: no {variant!r} model (exported: {', '.join(sorted(self.cfg.files))})")
        self.variant = variant
        self.path = self.folder / self.cfg.files[variant]
        self.session = open_session(self.path, threads)
        self.max_batch: int | None = None  # views per forward (None: a whole batch of equal-size views)

    @property
    def name(self) -> str:
        return f"{self.cfg.model} (onnx {self.variant})"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Normalised scores (B,) of a float32 (B, 3, H, W) batch of RGB in [0, 1]."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got shape {batch.shape}")
        return self.session.run([self.cfg.output_name], {self.cfg.input_name: batch})[0].reshape(-1)

    def score(self, image) -> float:
        """One image's score on the model's output scale (e.g. MOS 0–100 for a CLIVE-trained model)."""
        return score_image(self, image)

    def quality_map(
        self, image, patch: int | None = None, stride: int | None = None, max_batch: int = 32
    ) -> QualityMap:
        """Patch-wise scores of one image on a grid (:func:`kdiqa.runtime.qmap.quality_map`)."""
        return quality_map(self, image, patch, stride, max_batch)


def resolve_onnx_folder(model: str | Path) -> Path:
    """The exported folder behind ``model``: a bundled name or alias (its ``onnx/`` folder), or a path.

    Example:
        >>> resolve_onnx_folder("default").parts[-2:]
        ('iqa_effnet_lite0_s4.clive_third_native', 'onnx')
    """
    if is_pretrained(model):
        folder = weights_folder(model) / ONNX_SUBDIR
        if not (folder / PREPROCESS_NAME).is_file():
            raise FileNotFoundError(
                f"{model}: this installation has no bundled ONNX export of {resolve_name(model)} ({folder}); "
                "export one with `kdiqa export` and pass its folder as --model"
            )
        return folder
    return Path(model)
