"""Knowledge distillation methods: ``none``, ``response``, ``hints``, ``review``."""

from . import methods  # noqa: F401  (the list of methods: registers every one)
from .base import DistillConfig, Distiller, build_distiller
from .registry import DISTILLERS

__all__ = ["DISTILLERS", "DistillConfig", "Distiller", "build_distiller"]
