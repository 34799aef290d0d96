"""The registry of distillation methods: each method module registers its Distiller here by name.

:mod:`kdiqa.distill.methods` imports every method module and builds a method by name.
"""

from __future__ import annotations

from ..registry import Registry

DISTILLERS = Registry("distillation method")
