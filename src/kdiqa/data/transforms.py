"""Training and evaluation transforms. Images become float tensors in [0, 1]; the model applies its
own normalisation, so one transform serves every backbone.

Training: optional resize of the shorter side, random crop (padded by reflection when the image is
smaller) and horizontal flip. Evaluation: the full image, a centre crop, or N crops (4 corners +
centre, plus their mirrors) whose predictions are averaged.
"""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from .io import as_rgb_image, resize_short
from .views import check_n_crops, crop_boxes


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
    """Test-time views of one image, stacked as (V, 3, H, W); predictions are averaged over V.

    Args:
        mode: ``"full"`` (whole image), ``"center"`` (one centre crop) or ``"crops"`` (``n_crops``
            crops, and with ``flip`` their mirrors: ``2 * n_crops`` views).
        crop: crop size for ``center``/``crops``.
        n_crops: number of crops for ``crops``: centre, then the 4 corners, then an even grid
            (:func:`kdiqa.data.views.crop_boxes`; 9 is the 3 × 3 grid, 25 the 5 × 5).
        resize: optional shorter-side resize applied first.
        max_short: downscale (never upscale) so the shorter side is at most this, e.g. to bring
            12-megapixel photos to the resolution a model was trained at.
        flip: add mirrored views in ``crops`` mode.

    Example:
        >>> from PIL import Image
        >>> EvalTransform("crops", 32, 5)(Image.new("RGB", (48, 40))).shape
        torch.Size([10, 3, 32, 32])
    """

    MODES = ("full", "center", "crops")

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
        check_n_crops(n_crops)
        self.mode, self.crop, self.n_crops, self.resize, self.flip = mode, crop, n_crops, resize, flip
        self.max_short = max_short

    def __call__(self, img: Image.Image) -> torch.Tensor:
        img = resize_short(img, self.resize)
        if self.max_short and min(img.size) > self.max_short:
            img = resize_short(img, self.max_short)
        t = TF.to_dtype(TF.to_image(img), torch.float32, scale=True)
        if self.mode == "full":
            return t[None]
        t = _pad_to(t, self.crop)
        c = self.crop
        boxes = crop_boxes(t.shape[-2], t.shape[-1], c, 1 if self.mode == "center" else self.n_crops)
        views = [t[:, y : y + c, x : x + c] for y, x in boxes]
        if self.mode == "crops" and self.flip:
            views += [v.flip(-1) for v in views]
        return torch.stack(views)
