"""kdiqa: no-reference image quality assessment by knowledge distillation.

Example:
    >>> import kdiqa
    >>> "iqa_effnet_lite2" in kdiqa.list_models()
    True
"""

from .checkpoint import load_model, save_model
from .data.datasets import IQADataset, Row, get_dataset
from .data.io import ImageLoadError, load_image
from .hub import list_pretrained, load
from .models.iqa import IQAModel, ModelConfig
from .models.zoo import create_model, list_models, register_model

__version__ = "0.1.0"

__all__ = [
    "IQADataset",
    "IQAModel",
    "ImageLoadError",
    "ModelConfig",
    "Row",
    "__version__",
    "create_model",
    "get_dataset",
    "list_models",
    "list_pretrained",
    "load",
    "load_image",
    "load_model",
    "register_model",
    "save_model",
]
