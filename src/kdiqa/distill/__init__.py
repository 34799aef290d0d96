"""Knowledge distillation methods: ``none``, ``response``, ``hints``, ``review``."""

from .base import DISTILLERS, DistillConfig, Distiller, build_distiller

__all__ = ["DISTILLERS", "DistillConfig", "Distiller", "build_distiller"]
