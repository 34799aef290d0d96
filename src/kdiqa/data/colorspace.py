"""Colour-space conversions for the synthetic distortions (float arrays, out-of-gamut values kept).

Written here because Pillow's LAB/HSV/YCbCr modes are 8-bit and clip out-of-gamut values, which the
saturation distortions rely on. Formulas follow MATLAB's ``rgb2lab`` (sRGB, D65), ``rgb2hsv`` and
``rgb2ycbcr`` (ITU-R BT.601, studio range), as KADIS-700k's generator does. Images are float64
``HxWx3`` arrays in [0, 1].

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((8, 8, 3))
    >>> bool(np.allclose(lab_to_rgb(rgb_to_lab(x)), x, atol=1e-6))
    True
"""

from __future__ import annotations

import numpy as np

_RGB2XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_XYZ2RGB = np.linalg.inv(_RGB2XYZ)
_WHITE = _RGB2XYZ.sum(axis=1)  # D65 white point of sRGB
_DELTA = 6.0 / 29.0
_RGB2YCC = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]) / 255
_YCC_OFFSET = np.array([16.0, 128.0, 128.0]) / 255
_YCC2RGB = np.linalg.inv(_RGB2YCC)
LUMA = np.array([0.2989, 0.5870, 0.1140])  # MATLAB rgb2gray weights


def rgb_to_lab(x: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] → CIE L*a*b* (L in [0, 100])."""
    lin = np.where(x <= 0.04045, x / 12.92, ((np.maximum(x, 0.04045) + 0.055) / 1.055) ** 2.4)
    t = (lin @ _RGB2XYZ.T) / _WHITE
    f = np.where(t > _DELTA**3, np.cbrt(t), t / (3 * _DELTA**2) + 4.0 / 29.0)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIE L*a*b* → sRGB, out-of-gamut colours clipped to [0, 1] (MATLAB ``truncate(lab2rgb(...))``)."""
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], -1)
    t = np.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4.0 / 29.0))
    lin = (t * _WHITE) @ _XYZ2RGB.T
    srgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * np.maximum(lin, 0.0031308) ** (1 / 2.4) - 0.055)
    return np.clip(srgb, 0.0, 1.0)


def rgb_to_hsv(x: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] → HSV with all three channels in [0, 1]."""
    v, c = x.max(-1), x.max(-1) - x.min(-1)
    s = np.where(v > 0, c / np.where(v > 0, v, 1.0), 0.0)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    cs = np.where(c > 0, c, 1.0)
    h = np.select([c == 0, v == r, v == g], [0.0, ((g - b) / cs) % 6, (b - r) / cs + 2], (r - g) / cs + 4)
    return np.stack([h / 6, s, v], -1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """HSV → RGB. Accepts saturation outside [0, 1] (negative flips to the complementary hue); clips."""
    h, s, v = hsv[..., :1], hsv[..., 1:2], hsv[..., 2:]
    k = (np.array([5.0, 3.0, 1.0]) + 6 * h) % 6
    return np.clip(v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1), 0.0, 1.0)


def rgb_to_ycbcr(x: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] → YCbCr (BT.601 studio range, scaled to [0, 1] like MATLAB's double output)."""
    return x @ _RGB2YCC.T + _YCC_OFFSET


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`, clipped to [0, 1]."""
    return np.clip((ycc - _YCC_OFFSET) @ _YCC2RGB.T, 0.0, 1.0)
