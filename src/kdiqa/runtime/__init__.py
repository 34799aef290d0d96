"""The torch-free predictor: views in numpy, the backend protocol, batch scoring and the ONNX Runtime backend.

Needs numpy, Pillow, tqdm and onnxruntime only (``pip install kdiqa[runtime]``). The installation ships an
ONNX export of the default model, so scoring works without torch and without exporting anything:

Example:
    >>> from kdiqa.runtime import OnnxScorer, score_paths
    >>> scorer = OnnxScorer("default", threads=2)  # or a folder written by `kdiqa export`  # doctest: +SKIP
    >>> scorer.score("photo.jpg")  # doctest: +SKIP
    61.2
    >>> [r.score for r in score_paths(scorer, ["a.jpg", "b.jpg"])]  # doctest: +SKIP
    [61.2, 48.7]
"""

from .predictor import Backend, predict_paths, predict_views, score_image, score_paths
from .preprocess import PREPROCESS_NAME, PreprocessConfig, make_views
from .qmap import QualityMap, quality_map
from .scorer import OnnxScorer, open_session, resolve_onnx_folder, session_options

__all__ = [
    "PREPROCESS_NAME",
    "Backend",
    "OnnxScorer",
    "PreprocessConfig",
    "QualityMap",
    "make_views",
    "open_session",
    "predict_paths",
    "predict_views",
    "quality_map",
    "resolve_onnx_folder",
    "score_image",
    "score_paths",
    "session_options",
]
