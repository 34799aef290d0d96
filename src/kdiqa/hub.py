"""Loading models by name or path: bundled pretrained weights, checkpoint folders, registry names."""

from __future__ import annotations

import warnings
from pathlib import Path

from .checkpoint import CONFIG_NAME, load_model
from .models.iqa import IQAModel
from .models.zoo import MODELS, create_model

WEIGHTS_DIR = Path(__file__).parent / "weights"

# Bundled checkpoints (safetensors + config.json inside the package): "<model>.<tag>".
PRETRAINED = {
    "iqa_effnet_lite2.clive": "iqa_effnet_lite2.clive",  # the reference teacher
    "iqa_mobilenetv3_small_050.clive": "iqa_mobilenetv3_small_050.clive",  # the default student
    # the small student cut from ImageNet Lite0: as few parameters as the default, ~10x its MACs, far more accurate
    "iqa_effnet_lite0_s4.clive": "iqa_effnet_lite0_s4.clive",
}
ALIASES = {"default": "iqa_mobilenetv3_small_050.clive", "teacher": "iqa_effnet_lite2.clive"}


def list_pretrained() -> list[str]:
    """Bundled pretrained names whose weights are present in this installation."""
    return sorted(n for n, d in PRETRAINED.items() if (WEIGHTS_DIR / d / CONFIG_NAME).is_file())


def resolve_folder(model: str | Path) -> Path:
    """The checkpoint folder behind a bundled name, alias or path."""
    key = ALIASES.get(str(model), str(model))
    folder = WEIGHTS_DIR / PRETRAINED[key] if key in PRETRAINED else Path(model)
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
    key = ALIASES.get(str(model), str(model))
    if key in PRETRAINED:
        folder = WEIGHTS_DIR / PRETRAINED[key]
        if not (folder / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"bundled weights for {key!r} are missing from this installation ({folder})")
        return load_model(folder, map_location=device).to(device).eval()
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
        f"{model!r} is neither a checkpoint folder, a bundled model ({', '.join(PRETRAINED)}, "
        f"'default') nor a registered architecture. {hint}"
    )
