"""The predictor's torch backend: an :class:`~kdiqa.models.iqa.IQAModel` behind the backend protocol.

Views come from the torch-free :func:`kdiqa.runtime.preprocess.make_views` (numpy) and become a tensor
only for the forward pass, so torch and ONNX Runtime score exactly the same pixels; batching, decoding
and failure handling are :mod:`kdiqa.runtime.predictor`'s.

Example:
    >>> import kdiqa, numpy as np
    >>> from kdiqa.runtime import score_image
    >>> backend = TorchBackend(kdiqa.create_model("iqa_test_tiny"))
    >>> 0 <= score_image(backend, np.zeros((32, 32, 3), np.uint8)) <= 100
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .data.transforms import EvalTransform, as_pil
from .runtime.predictor import score_image
from .runtime.preprocess import PreprocessConfig
from .runtime.qmap import QualityMap, quality_map

if TYPE_CHECKING:
    from .models.iqa import IQAModel


def resolve_views(model: IQAModel, views: PreprocessConfig | EvalTransform | None = None) -> PreprocessConfig:
    """The views to score ``model`` with: the model's defaults (``None``), a :class:`PreprocessConfig`, or
    the view settings of an :class:`~kdiqa.data.transforms.EvalTransform`; the output scale is always
    the model's."""
    base = PreprocessConfig.for_model(model.cfg)
    if views is None:
        return base
    if isinstance(views, EvalTransform):
        views = views.cfg
    if not isinstance(views, PreprocessConfig):
        raise TypeError(f"views must be a PreprocessConfig or an EvalTransform, got {type(views).__name__}")
    return PreprocessConfig(
        model=base.model,
        mode=views.mode,
        crop=views.crop,
        n_crops=views.n_crops,
        flip=views.flip,
        resize=views.resize,
        max_short=views.max_short,
        score_range=base.score_range,
        higher_better=base.higher_better,
        mean=base.mean,
        std=base.std,
    )


class TorchBackend:
    """A torch :class:`~kdiqa.models.iqa.IQAModel` as a predictor backend (put in eval mode on creation).

    Args:
        model: the model (its device is where batches go).
        views: test-time views (see :func:`resolve_views`); ``None``: the model's defaults.
        channels_last: run in NHWC memory layout (the model is converted in place), the layout these
            CNNs are trained in here.
    """

    def __init__(
        self, model: IQAModel, views: PreprocessConfig | EvalTransform | None = None, channels_last: bool = False
    ) -> None:
        self.model = model.eval()
        self.cfg = resolve_views(model, views)
        self.channels_last = channels_last
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self.device = next(model.parameters()).device

    @property
    def name(self) -> str:
        return self.model.name

    @torch.no_grad()
    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Normalised scores (B,) of a float32 (B, 3, H, W) numpy batch of RGB in [0, 1]."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x).float().cpu().numpy()

    def score(self, image) -> float:
        """One image (path, PIL image, HxWxC array or CxHxW tensor in [0, 1]) on the model's output scale."""
        return score_image(self, as_pil(image) if isinstance(image, torch.Tensor) else image)

    def quality_map(
        self, image, patch: int | None = None, stride: int | None = None, max_batch: int = 32
    ) -> QualityMap:
        """Patch-wise scores of one image on a grid (:func:`kdiqa.runtime.qmap.quality_map`)."""
        return quality_map(self, as_pil(image) if isinstance(image, torch.Tensor) else image, patch, stride, max_batch)
