"""The 25 synthetic distortion types of KADID-10k / KADIS-700k, each at five levels (1 = mildest).

The level parameters are those of KADIS-700k's MATLAB generator (``imdist_generator.m``); the operations
re-implement its ``im*.m`` functions with numpy, scipy and Pillow. :data:`DISTORTIONS` documents each
type: KADID index, parameters, operation, and where this implementation departs from KADIS.

Departures that apply to every type: KADIS min-max stretches both the input and the output image
(``mapmm``); we do not, since the output stretch would undo the mean-shift and contrast distortions.
Sizes in pixels (blur radii, shifts, patches) are KADIS's absolute values, tuned for its 512×384
images; patch sizes shrink only when an image is too small to hold them. The random types draw from
``numpy.random.default_rng(seed)`` and never touch the global RNG.

Note that ``mean_shift`` and ``contrast_change`` run from one extreme to the other: level 3 is the
identity, levels 1-2 brighten / raise contrast, levels 4-5 darken / lower it. ``color_saturation2``
level 1 (factor 1) is the identity too, as in KADIS.

Example:
    >>> import numpy as np
    >>> from kdiqa.data.distortions import apply_distortion, apply_chain, list_distortions
    >>> img = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    >>> len(list_distortions())
    25
    >>> apply_distortion(img, "jpeg", level=3).size
    (64, 48)
    >>> apply_chain(img, [("gaussian_blur", 2), ("white_noise", 1)], seed=7).mode
    'RGB'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..registry import Registry
from . import distortion_ops as ops
from .io import to_rgb

_REGISTRY = Registry("distortion")
MIN_SIZE = 8


@dataclass(frozen=True)
class DistortionSpec:
    """One row of the distortion table.

    Attributes:
        name: registry name.
        kadid_index: the type's number in KADID-10k / KADIS-700k (1..25).
        params: the parameter of levels 1..5.
        operation: what is done with the parameter.
        departure: where this implementation differs from KADIS's MATLAB code ("" if nowhere notable).
        random: whether the output depends on the seed.
    """

    name: str
    kadid_index: int
    params: tuple[float, float, float, float, float]
    operation: str
    departure: str = ""
    random: bool = False


_S = DistortionSpec
DISTORTIONS: tuple[DistortionSpec, ...] = (
    _S(
        "gaussian_blur",
        1,
        (0.1, 0.5, 1, 2, 5),
        "Gaussian blur, σ = param px (support 2·ceil(2σ)+1); level 1 (σ 0.1) is practically the identity, as in KADIS.",
    ),
    _S(
        "lens_blur",
        2,
        (1, 2, 4, 6, 8),
        "Pill-box (disk) blur of radius param px.",
        "Disk taps from 16× supersampling, not fspecial's closed-form arc areas.",
    ),
    _S(
        "motion_blur",
        3,
        (1, 2, 4, 6, 10),
        "Linear motion blur of length param px at a random angle; level 1 (length 1) is the identity, as in KADIS.",
        "Anti-aliased segment kernel written here; angle uniform in [0°, 180°).",
        random=True,
    ),
    _S(
        "color_diffusion",
        4,
        (1, 3, 6, 8, 12),
        "In Lab, a/b Gaussian-blurred with σ = 1.5·param + 2 and multiplied by param (KADIS imcolorblur).",
    ),
    _S(
        "color_shift",
        5,
        (1, 3, 6, 8, 12),
        "Green channel translated by param px in a random direction, blended in by the normalised, "
        "smoothed (σ 4) gradient magnitude, so the shift shows at edges.",
        "Uncovered border replicated (KADIS imshift's border rule unknown).",
        random=True,
    ),
    _S(
        "color_quantization",
        6,
        (64, 48, 32, 16, 8),
        "Palette of param colours (Pillow median cut + k-means) with Floyd-Steinberg dithering.",
        "MATLAB rgb2ind uses minimum-variance quantisation; Pillow's median cut differs in detail.",
    ),
    _S(
        "color_saturation1",
        7,
        (0.4, 0.2, 0.1, 0, -0.4),
        "HSV saturation multiplied by param (0 = grey, negative = complementary hues).",
    ),
    _S(
        "color_saturation2",
        8,
        (1, 2, 3, 6, 9),
        "Lab a/b multiplied by param, out-of-gamut colours clipped (level 1 = identity, as in KADIS).",
    ),
    _S(
        "jpeg2000",
        9,
        (16, 32, 45, 120, 400),
        "JPEG 2000 (Pillow/OpenJPEG, 9/7 wavelet) at compression ratio param.",
        "OpenJPEG instead of MATLAB's writer; resolution count reduced for tiny images. On small images "
        "the codestream header eats much of the byte budget, so levels 4-5 are harsher than at 512×384.",
    ),
    _S("jpeg", 10, (43, 36, 24, 7, 4), "JPEG (Pillow/libjpeg, 4:2:0) at quality param."),
    _S(
        "white_noise",
        11,
        (0.001, 0.002, 0.003, 0.005, 0.01),
        "Additive Gaussian noise of variance param on [0, 1] RGB, clipped.",
        random=True,
    ),
    _S(
        "white_noise_color_component",
        12,
        (0.0001, 0.0005, 0.001, 0.002, 0.003),
        "Gaussian noise of variance param added to the BT.601 YCbCr image (all three components, as "
        "KADIS's imnoise on the YCbCr array), clipped, back to RGB.",
        random=True,
    ),
    _S(
        "impulse_noise",
        13,
        (0.001, 0.005, 0.01, 0.02, 0.03),
        "Salt & pepper of density param, per sample (each channel independently, as MATLAB imnoise).",
        random=True,
    ),
    _S(
        "multiplicative_noise",
        14,
        (0.001, 0.005, 0.01, 0.02, 0.05),
        "Speckle: I + I·n with n uniform, zero mean, variance param (MATLAB imnoise 'speckle').",
        random=True,
    ),
    _S(
        "denoise",
        15,
        (0.01, 0.03, 0.05, 0.1, 0.15),
        "Gaussian noise of variance param, then a sliding-window DCT denoiser (hard threshold 2.7σ, "
        "8×8 blocks, opponent colours).",
        "KADIS denoises with MATLAB's DnCNN; no such network here, so a classical DCT denoiser stands in.",
        random=True,
    ),
    _S(
        "brighten",
        16,
        (0.1, 0.2, 0.4, 0.7, 1.1),
        "Tone curve through (0.5, 0.5 + param/2), mean of 2× the RGB curve and 1× the curve on Lab L.",
    ),
    _S(
        "darken",
        17,
        (0.05, 0.1, 0.2, 0.4, 0.8),
        "Tone curve through (0.5, 0.5 - param/2), blended like brighten.",
        "KADIS's imdarken source was not available; written as the mirror image of imbrighten.",
    ),
    _S(
        "mean_shift",
        18,
        (0.15, 0.08, 0, -0.08, -0.15),
        "param added to every sample, clipped. Level 3 is the identity; 1-2 brighter, 4-5 darker.",
    ),
    _S(
        "jitter",
        19,
        (0.05, 0.1, 0.2, 0.5, 1),
        "Five warps, each moving every pixel by N(0, param²) px in x and y.",
        "Bilinear instead of bicubic resampling.",
        random=True,
    ),
    _S(
        "non_eccentricity_patch",
        20,
        (20, 40, 60, 80, 100),
        "param times: a random 16×16 patch is copied to a random offset of up to ±8 px.",
        "Patch and offset shrink to min(H, W)/4 on images under 64 px.",
        random=True,
    ),
    _S(
        "pixelate",
        21,
        (0.01, 0.05, 0.1, 0.2, 0.5),
        "Nearest-neighbour downscale by z = 0.95 - param^0.6, then nearest upscale to the original size.",
    ),
    _S(
        "quantization",
        22,
        (20, 16, 13, 10, 7),
        "param multi-Otsu thresholds from the histogram of all channels pooled; each sample snaps to "
        "the threshold above it (0 below the first, 1 above the last), as MATLAB imquantize.",
        "Thresholds by Lloyd iterations on the histogram (same criterion as multithresh).",
    ),
    _S(
        "color_block",
        23,
        (2, 4, 6, 8, 10),
        "param solid 32×32 blocks of random colour pasted at random positions.",
        "Blocks shrink to min(H, W)/2 on images under 64 px.",
        random=True,
    ),
    _S("high_sharpen", 24, (1, 2, 3, 6, 12), "Unsharp mask on Lab L: L + param·(L - G_σ=3 * L)."),
    _S(
        "contrast_change",
        25,
        (0.3, 0.15, 0, -0.4, -0.6),
        "S-shaped tone curve through (0.25, 0.25 - param/4), (0.5, 0.5), (0.75, 0.75 + param/4). "
        "Level 3 is the identity; 1-2 raise contrast, 4-5 lower it.",
        "Monotone cubic (PCHIP) through the control points instead of KADIS's spline.",
    ),
)
del _S
_SPECS = {s.name: s for s in DISTORTIONS}
if set(ops.OPERATIONS) != set(_SPECS):  # every table row has an operation and vice versa
    raise RuntimeError(f"distortion table and operations differ: {set(ops.OPERATIONS) ^ set(_SPECS)}")
for _spec in DISTORTIONS:
    _REGISTRY.register(_spec.name)(ops.OPERATIONS[_spec.name])


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------
def list_distortions() -> list[str]:
    """Names of the 25 distortion types, in KADID-10k order."""
    return [s.name for s in DISTORTIONS]


def distortion_spec(name: str) -> DistortionSpec:
    """The table row of ``name``; unknown names raise ``KeyError`` with a "Did you mean" hint."""
    _REGISTRY.get(name)
    return _SPECS[name]


def distortion_params(name: str) -> tuple[float, float, float, float, float]:
    """The parameters of levels 1..5 of ``name`` (KADIS values), e.g. JPEG qualities for ``"jpeg"``."""
    return distortion_spec(name).params


def _as_array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        arr = np.asarray(to_rgb(image))
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"array images must be HxWx3 uint8, got {image.dtype} {image.shape}")
        arr = image
    else:
        raise TypeError(f"expected a PIL image or an HxWx3 uint8 array, got {type(image).__name__}")
    if min(arr.shape[:2]) < MIN_SIZE:
        h, w = arr.shape[:2]
        raise ValueError(f"images must be at least {MIN_SIZE}x{MIN_SIZE} pixels, got {w}x{h}")
    return arr


def _check(name: str, level: int) -> ops.Op:
    op = _REGISTRY.get(name)
    if isinstance(level, bool) or not isinstance(level, int | np.integer) or not 1 <= level <= 5:
        raise ValueError(f"level must be an integer in 1..5, got {level!r} for {name!r}")
    return op


def _apply(arr: np.ndarray, name: str, level: int, rng: np.random.Generator) -> np.ndarray:
    out = _check(name, level)(arr.astype(np.float64) / 255.0, float(_SPECS[name].params[level - 1]), rng)
    return out if out.dtype == np.uint8 else ops.to_uint8(out)


def apply_distortion(
    image: Image.Image | np.ndarray, type: str, level: int, seed: int | Sequence[int] = 0
) -> Image.Image:
    """Applies one distortion at one level.

    Args:
        image: an RGB PIL image (other modes are converted) or an ``HxWx3`` uint8 array, at least 8×8.
        type: a name from :func:`list_distortions`.
        level: 1 (mildest) to 5 (strongest); see the module notes on ``mean_shift``/``contrast_change``.
        seed: an int (or sequence of ints) seeding ``numpy.random.default_rng`` for the random types;
            same seed, same output.

    Returns:
        The distorted image: RGB PIL, same size, 8 bits per channel.

    Raises:
        KeyError: unknown type (the message suggests close names).
        ValueError: level outside 1..5, or an image that is too small / of the wrong shape.
        TypeError: ``image`` is neither a PIL image nor a numpy array.
        RuntimeError: ``jpeg2000`` with a Pillow built without OpenJPEG.

    Example:
        >>> from PIL import Image
        >>> apply_distortion(Image.new("RGB", (32, 24), "gray"), "white_noise", 5, seed=1).size
        (32, 24)
    """
    arr = _as_array(image)
    return Image.fromarray(_apply(arr, type, level, np.random.default_rng(seed)))


def apply_chain(image: Image.Image | np.ndarray, chain: Sequence[tuple[str, int]], seed: int = 0) -> Image.Image:
    """Applies several distortions in order, each on the 8-bit result of the previous one.

    Step ``i`` draws from ``numpy.random.default_rng([seed, i])``, so the chain equals calling
    :func:`apply_distortion` step by step with ``seed=[seed, i]``. All names and levels are checked
    before anything is computed. An empty chain returns a copy of the image.

    Example:
        >>> from PIL import Image
        >>> img = Image.new("RGB", (40, 30), (120, 80, 200))
        >>> apply_chain(img, [("jpeg", 5), ("impulse_noise", 2)], seed=3).size
        (40, 30)
    """
    steps = [(name, level) for name, level in chain]
    for name, level in steps:
        _check(name, level)
    arr = _as_array(image)
    for i, (name, level) in enumerate(steps):
        arr = _apply(arr, name, level, np.random.default_rng([seed, i]))
    return Image.fromarray(np.array(arr, copy=True))
