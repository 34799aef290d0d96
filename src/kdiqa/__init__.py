"""kdiqa: no-reference image quality assessment by knowledge distillation.

The public names below are imported lazily (PEP 562), so ``import kdiqa.runtime`` — the ONNX
Runtime scorer — works in an environment without torch.

Example:
    >>> import kdiqa
    >>> "iqa_effnet_lite2" in kdiqa.list_models()
    True
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name → the submodule that defines it (imported on first access)
_LAZY = {
    "load_model": ".checkpoint",
    "save_model": ".checkpoint",
    "IQADataset": ".data.table",
    "Row": ".data.table",
    "get_dataset": ".data.datasets",
    "ImageLoadError": ".data.io",
    "load_image": ".data.io",
    "list_pretrained": ".hub",
    "load": ".hub",
    "IQAModel": ".models.iqa",
    "ModelConfig": ".models.iqa",
    "create_model": ".models.zoo",
    "list_models": ".models.zoo",
    "register_model": ".models.zoo",
}

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'kdiqa' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
