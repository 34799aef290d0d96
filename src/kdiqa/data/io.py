"""Image decoding that users can trust.

Every odd input a photo collection contains becomes an 8-bit RGB :class:`PIL.Image.Image`:
EXIF orientation is applied; grayscale, palette, RGBA/LA, CMYK and 16/32-bit images are converted;
Pillow's decompression-bomb guard stays on; and a missing, empty, truncated or non-image file raises
one :class:`ImageLoadError` that names the file and the problem.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")


class ImageLoadError(OSError):
    """An image file could not be decoded. The message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _high_bit_depth_to_rgb(img: Image.Image) -> Image.Image:
    """Maps 16-bit ("I;16*") and 32-bit ("I", "F") single-channel images to 8-bit RGB.

    Pillow's own ``convert("RGB")`` clips these modes at 255 instead of rescaling, so a 16-bit PNG
    would come out nearly white; we rescale by the nominal range of the stored type.
    """
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        scale = 65535.0
    elif img.mode == "F":
        scale = max(float(arr.max()), 1.0) if arr.size else 1.0
        scale = 1.0 if scale <= 1.0 else scale
    else:  # "I": 32-bit ints; PNG 16-bit greyscale arrives as "I" in some Pillow versions
        scale = 65535.0 if arr.size and arr.max() > 255 else 255.0
    arr8 = np.clip(arr.astype(np.float64) / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(arr8, mode="L").convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """Converts any Pillow image mode to 8-bit RGB (alpha composited over white)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        return _high_bit_depth_to_rgb(img)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, RGBX


def load_image(path: str | os.PathLike) -> Image.Image:
    """Loads an image file as 8-bit RGB with EXIF orientation applied.

    Args:
        path: the image file.

    Returns:
        The decoded image, fully loaded into memory (the file is closed).

    Raises:
        ImageLoadError: the file is missing, empty, truncated, too large (decompression bomb) or
            not an image.

    Example:
        >>> import tempfile, os
        >>> from PIL import Image
        >>> p = os.path.join(tempfile.mkdtemp(), "x.png")
        >>> Image.new("L", (8, 4)).save(p)
        >>> load_image(p).mode, load_image(p).size
        ('RGB', (8, 4))
    """
    p = Path(path)
    if not p.exists():
        raise ImageLoadError(p, "file not found")
    if p.is_dir():
        raise ImageLoadError(p, "is a directory, not an image file")
    if p.stat().st_size == 0:
        raise ImageLoadError(p, "file is empty")
    try:
        with Image.open(p) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return to_rgb(img)
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(p, f"image too large (decompression-bomb guard): {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(p, "not an image file (format not recognised)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow raises OSError("image file is truncated ...") and friends for damaged data.
        raise ImageLoadError(p, f"cannot decode image ({exc})") from exc


def is_image_file(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def as_rgb_image(image) -> Image.Image:
    """A path, PIL image or HxW / HxWxC uint8 (or float in [0, 1]) array → 8-bit RGB PIL image.

    Torch-free (the ONNX runtime uses it); :func:`kdiqa.data.transforms.as_pil` adds tensors.
    """
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, str) or hasattr(image, "__fspath__"):
        return load_image(image)
    if isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            arr = (np.clip(arr.astype(np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
            raise ValueError(f"array images must be HxW or HxWxC (C in 1,3,4), got shape {image.shape}")
        return to_rgb(Image.fromarray(arr.squeeze(2) if arr.shape[2] == 1 else arr))
    raise TypeError(f"cannot read an image from {type(image).__name__}")


def resize_short(img: Image.Image, short: int | None) -> Image.Image:
    """Bicubic resize so that the shorter side is ``short`` (unchanged when ``short`` is None)."""
    if not short or min(img.size) == short:
        return img
    w, h = img.size
    s = short / min(w, h)
    return img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
