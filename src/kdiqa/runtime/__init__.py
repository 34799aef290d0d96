"""Torch-free scoring of exported models: numpy, Pillow and onnxruntime only.

Install without torch (``pip install --no-deps kdiqa`` plus ``numpy Pillow onnxruntime``; see the
README), export a model with ``kdiqa export`` on a machine that has torch, then:

Example:
    >>> from kdiqa.runtime import OnnxScorer
    >>> scorer = OnnxScorer("exported/", threads=2)  # doctest: +SKIP
    >>> scorer.score("photo.jpg")  # doctest: +SKIP
    61.2
"""

from .preprocess import PREPROCESS_NAME, PreprocessConfig, make_views
from .scorer import OnnxScorer, open_session, session_options

__all__ = ["PREPROCESS_NAME", "OnnxScorer", "PreprocessConfig", "make_views", "open_session", "session_options"]
