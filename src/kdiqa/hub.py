"""Loading models by name or path: bundled pretrained weights, checkpoint folders, registry names.

Bundled weights are the model registry's ``arch.tag`` names (:func:`kdiqa.models.zoo.create_model`,
``kdiqa list-models --pretrained``), listed in :mod:`kdiqa.models.pretrained` with the aliases
``default`` and ``teacher``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from .checkpoint import CONFIG_NAME, load_model
from .models.iqa import IQAModel
from .models.pretrained import installed, is_pretrained, pretrained_names, resolve_name, weights_folder
from .models.zoo import MODELS, create_model


def list_pretrained() -> list[str]:
    """Bundled pretrained names whose weights are present in this installation."""
    return installed()


def resolve_folder(model: str | Path) -> Path:
    """The checkpoint folder behind a bundled name, alias or path."""
    folder = weights_folder(str(model)) if is_pretrained(str(model)) else Path(model)
    if not (folder / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{model}: no checkpoint folder with {CONFIG_NAME} at {folder}")
    return folder


def load(model: str | Path = "default", device: str = "cpu") -> IQAModel:
    """Loads a ready-to-use IQA model in eval mode.

    Args:
        model: ``"default"``, a bundled pretrained name (``kdiqa list-models --pretrained``), a
            checkpoint folder (``config.json`` + ``model.safetensors``), or a registered
            architecture name (random weights: useful for tests and timing only).
        device: where to put it.

    Example:
        >>> import kdiqa
        >>> m = kdiqa.load("iqa_test_tiny")
        >>> isinstance(m.score(__import__("numpy").zeros((32, 32, 3), "uint8")), float)
        True
    """
    key = resolve_name(str(model))
    if is_pretrained(key):
        return create_model(key).to(device).eval()
    path = Path(model)
    if path.is_dir():
        return load_model(path, map_location=device).to(device).eval()
    if key in MODELS:
        warnings.warn(
            f"{key!r} is an architecture name: the model has random weights and its scores mean nothing. "
            "Use 'default', a bundled model or a checkpoint folder for real scores.",
            stacklevel=2,
        )
        return create_model(key).to(device).eval()
    if path.exists():
        raise ValueError(f"{path} is not a kdiqa checkpoint folder (config.json + model.safetensors)")
    hint = MODELS.unknown_message(key)
    raise KeyError(
        f"{model!r} is neither a checkpoint folder, a bundled model ({', '.join(pretrained_names())}, "
        f"'default') nor a registered architecture. {hint}"
    )
