"""Training and evaluation transforms. Images become float tensors in [0, 1]; the model applies its
own normalisation, so one transform serves every backbone.

Training: optional resize of the shorter side, random crop (padded by reflection when the image is
smaller) and horizontal flip. Evaluation: the full image, a centre crop, or N crops (4 corners +
centre, plus their mirrors) whose predictions are averaged; those views are made in numpy by
:func:`kdiqa.runtime.preprocess.make_views`, shared with the ONNX runtime.
"""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from ..runtime.preprocess import MODES, PreprocessConfig, make_views
from .io import as_rgb_image, resize_short


def as_pil(image) -> Image.Image:
    """Path, PIL image, HWC numpy array (uint8 or float in [0,1]) or CHW tensor in [0,1] → RGB PIL."""
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"tensor images must be CHW with 1 or 3 channels, got shape {tuple(t.shape)}")
        return TF.to_pil_image(t.float().clamp(0, 1).expand(3, -1, -1))
    return as_rgb_image(image)


def _pad_to(t: torch.Tensor, size: int) -> torch.Tensor:
    h, w = t.shape[-2:]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        t = torch.nn.functional.pad(t[None], (0, pw, 0, ph), mode=mode)[0]
    return t


class TrainTransform:
    """Random crop of ``crop`` px (after an optional shorter-side resize) + random horizontal flip.

    Example:
        >>> from PIL import Image
        >>> TrainTransform(32)(Image.new("RGB", (50, 40))).shape
        torch.Size([3, 32, 32])
    """

    def __init__(self, crop: int, resize: int | None = None, hflip: bool = True) -> None:
        self.crop, self.resize, self.hflip = crop, resize, hflip

    def __call__(self, img: Image.Image) -> torch.Tensor:
        t = _pad_to(TF.to_dtype(TF.to_image(resize_short(img, self.resize)), torch.float32, scale=True), self.crop)
        h, w = t.shape[-2:]
        top = int(torch.randint(0, h - self.crop + 1, ()).item())
        left = int(torch.randint(0, w - self.crop + 1, ()).item())
        t = t[:, top : top + self.crop, left : left + self.crop]
        if self.hflip and torch.rand(()) < 0.5:
            t = t.flip(-1)
        return t.contiguous()


class EvalTransform:
    """Test-time views of one image as a tensor (V, 3, H, W); predictions are averaged over V.

    A torch view of :func:`kdiqa.runtime.preprocess.make_views`, the one implementation of the views
    (the predictor, :mod:`kdiqa.runtime.predictor`, uses that directly; ``cfg`` is its configuration).

    Args:
        mode: ``"full"`` (whole image), ``"center"`` (one centre crop) or ``"crops"`` (``n_crops``
            crops, and with ``flip`` their mirrors: ``2 * n_crops`` views).
        crop: crop size for ``center``/``crops``.
        n_crops: number of crops for ``crops``: centre, then the 4 corners, then an even grid
            (:func:`kdiqa.data.views.crop_boxes`; 9 is the 3 × 3 grid, 25 the 5 × 5).
        resize: optional shorter-side resize applied first.
        flip: add mirrored views in ``crops`` mode.
        max_short: downscale (never upscale) so the shorter side is at most this, e.g. to bring
            12-megapixel photos to the resolution a model was trained at.

    Example:
        >>> from PIL import Image
        >>> EvalTransform("crops", 32, 5)(Image.new("RGB", (48, 40))).shape
        torch.Size([10, 3, 32, 32])
    """

    MODES = MODES

    def __init__(
        self,
        mode: str = "full",
        crop: int = 384,
        n_crops: int = 5,
        resize: int | None = None,
        flip: bool = True,
        max_short: int | None = None,
    ) -> None:
        if mode not in self.MODES:
            raise ValueError(f"eval mode must be one of {self.MODES}, got {mode!r}")
        self.cfg = PreprocessConfig(
            mode=mode, crop=crop, n_crops=n_crops, resize=resize, flip=flip, max_short=max_short
        )
        self.mode, self.crop, self.n_crops, self.resize, self.flip = mode, crop, n_crops, resize, flip
        self.max_short = max_short

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return torch.from_numpy(make_views(img, self.cfg))
