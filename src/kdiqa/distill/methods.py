"""Every distillation method, listed once: importing a method module registers its Distiller in
:data:`kdiqa.distill.registry.DISTILLERS`. The package imports this module, so a method is
available wherever ``kdiqa.distill`` is. A new method is one module with a
``@DISTILLERS.register("name")`` class, plus its line here.
"""

from __future__ import annotations

from . import hints, response, review

METHOD_MODULES = (response, hints, review)  # response.py also holds "none", the MOS-only control
