"""Drawing a :class:`~kdiqa.runtime.qmap.QualityMap`: the photo under a translucent colour map, with a colour bar.

Colours come from a matplotlib colour map (``pip install matplotlib``, in the ``plot`` and ``serve`` extras);
the picture is composed with Pillow, so no figure is rendered and a map draws in milliseconds. The colour
scale is the model's score range (comparable across images) unless ``relative`` stretches it to the map's
own minimum and maximum.

Example:
    >>> import numpy as np
    >>> from kdiqa.runtime.qmap import QualityMap
    >>> m = QualityMap(np.array([[10.0, 90.0]]), np.array([0]), np.array([0, 20]), 20, 20, (40, 20), (40, 20),
    ...                (0.0, 100.0))
    >>> render_overlay(np.zeros((20, 40, 3), np.uint8), m).size  # the photo plus the colour bar
    (112, 20)
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .preprocess import PreprocessConfig
from .qmap import QualityMap, prepare

BAR_WIDTH = 72  # pixels added on the right for the colour bar and its labels
DEFAULT_CMAP = "RdYlGn"  # red = low quality, green = high


def _colormap(name: str):
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("quality-map pictures need matplotlib (pip install kdiqa[plot])") from exc
    try:
        return matplotlib.colormaps[name]
    except KeyError as exc:
        raise ValueError(f"unknown matplotlib colour map {name!r}") from exc


def _colour_bar(height: int, lo: float, hi: float, cmap) -> Image.Image:
    bar = Image.new("RGB", (BAR_WIDTH, height), (255, 255, 255))
    inner = max(1, height - 16)
    ramp = cmap(np.linspace(1.0, 0.0, inner))[:, :3]  # top = high
    strip = (np.repeat(ramp[:, None, :], 14, axis=1) * 255 + 0.5).astype(np.uint8)
    bar.paste(Image.fromarray(strip), (6, 8))
    draw = ImageDraw.Draw(bar)
    font = ImageFont.load_default()
    for frac in (0.0, 0.5, 1.0):
        y = 8 + round((1 - frac) * (inner - 1))
        draw.line([(20, y), (24, y)], fill=(0, 0, 0))
        draw.text((27, max(0, min(height - 11, y - 5))), f"{lo + frac * (hi - lo):.0f}", fill=(0, 0, 0), font=font)
    return bar


def render_overlay(
    image,
    qmap: QualityMap,
    alpha: float = 0.45,
    cmap: str = DEFAULT_CMAP,
    relative: bool = False,
    views: PreprocessConfig | None = None,
) -> Image.Image:
    """The photo (at the map's prepared size) blended with the colour-mapped map, and a colour bar.

    ``image`` is the input the map was computed from (``views``: the backend's config, to prepare it the
    same way), or the prepared image itself.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    colours = _colormap(cmap)
    img = prepare(image, views)[0] if views is not None else Image.fromarray(np.asarray(image)).convert("RGB")
    if img.size != qmap.size:
        img = img.resize(qmap.size, Image.BICUBIC)
    lo, hi = (float(qmap.scores.min()), float(qmap.scores.max())) if relative else qmap.score_range
    span = hi - lo if hi > lo else 1.0
    dense = np.clip((qmap.dense() - lo) / span, 0.0, 1.0)
    heat = Image.fromarray((colours(dense)[..., :3] * 255 + 0.5).astype(np.uint8))
    blended = Image.blend(img, heat, alpha)
    out = Image.new("RGB", (qmap.size[0] + BAR_WIDTH, qmap.size[1]), (255, 255, 255))
    out.paste(blended, (0, 0))
    out.paste(_colour_bar(qmap.size[1], lo, hi, colours), (qmap.size[0], 0))
    return out


def overlay_png(image, qmap: QualityMap, **kwargs) -> bytes:
    """:func:`render_overlay` as PNG bytes."""
    buf = io.BytesIO()
    render_overlay(image, qmap, **kwargs).save(buf, format="PNG")
    return buf.getvalue()
