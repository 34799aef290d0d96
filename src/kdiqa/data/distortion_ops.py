"""Low-level image operations behind :mod:`kdiqa.data.distortions`.

Images are float64 ``HxWxC`` arrays in [0, 1] unless a function says otherwise. Kernels and the
filters that no installed library offers in the form KADIS-700k's MATLAB generator uses
(``fspecial('disk'|'motion')``, ``multithresh``, a DCT denoiser, displacement warps) are written here
with numpy/scipy; the colour conversions live in :mod:`kdiqa.data.colorspace`.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((16, 16, 3))
    >>> y = OPERATIONS["gaussian_blur"](x, 2.0, np.random.default_rng(0))
    >>> bool(y.std() < x.std())
    True
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, features
from scipy import fft, ndimage, signal
from scipy.interpolate import PchipInterpolator

from .colorspace import LUMA, hsv_to_rgb, lab_to_rgb, rgb_to_hsv, rgb_to_lab, rgb_to_ycbcr, ycbcr_to_rgb

Op = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
OPERATIONS: dict[str, Op] = {}  # filled below: distortion name -> op(image in [0, 1], param, rng)


# ----------------------------------------------------------------------------------------------------
# Filters and kernels
# ----------------------------------------------------------------------------------------------------
def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Per-channel Gaussian blur like MATLAB ``imgaussfilt`` (support 2*ceil(2σ)+1, replicated borders)."""
    return ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0), mode="nearest", truncate=2.0)


def convolve(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Filters every channel with an odd-sized 2-D ``kernel`` (FFT, replicated borders)."""
    ry, rx = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = np.pad(x, ((ry, ry), (rx, rx), (0, 0)), mode="edge")
    return signal.fftconvolve(padded, kernel[::-1, ::-1, None], mode="valid", axes=(0, 1))


def disk_kernel(radius: float, supersample: int = 16) -> np.ndarray:
    """Pill-box PSF like MATLAB ``fspecial('disk', r)``: each tap is the pixel's area inside the circle
    (computed by supersampling rather than fspecial's closed-form arc areas)."""
    half = int(np.ceil(radius - 0.5))
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    coords = (np.arange(-half, half + 1)[:, None] + sub[None, :]).ravel()
    inside = (coords[:, None] ** 2 + coords[None, :] ** 2) <= radius**2
    size = 2 * half + 1
    k = inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    return k / k.sum()


def motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    """Linear-motion PSF like MATLAB ``fspecial('motion', len, angle)``: an anti-aliased segment of
    ``length`` pixels through the centre at ``angle_deg`` (counter-clockwise from the x axis)."""
    half = (max(length, 1.0) - 1) / 2
    r = int(np.ceil(half)) + 1
    t = np.linspace(-half, half, max(2, int(20 * length) + 1))
    px, py = r + t * np.cos(np.deg2rad(angle_deg)), r - t * np.sin(np.deg2rad(angle_deg))
    k = np.zeros((2 * r + 1, 2 * r + 1))
    x0, y0 = np.floor(px).astype(int), np.floor(py).astype(int)
    fx, fy = px - x0, py - y0
    for dy, wy in ((0, 1 - fy), (1, fy)):  # bilinear splat of the samples along the segment
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(k, (y0 + dy, x0 + dx), wy * wx)
    return k / k.sum()


def dct_denoise(x: np.ndarray, sigma: float, block: int = 8, step: int = 2) -> np.ndarray:
    """Sliding-window DCT denoiser (Yu & Sapiro 2011), written here: in an orthonormal opponent colour
    space, 8×8 DCT coefficients under 2.7σ are zeroed and the overlapping blocks (shifted by ``step``)
    are averaged. Smooth flats, kept edges and lost fine texture, like a learned denoiser."""
    opp = np.array([[1, 1, 1], [1, 0, -1], [1, -2, 1]]) / np.sqrt([[3], [2], [6]])
    h, w = x.shape[:2]
    nby, nbx = -(-(h + block) // block), -(-(w + block) // block)
    pad = np.pad(x @ opp.T, ((block, nby * block - h), (block, nbx * block - w), (0, 0)), mode="reflect")
    acc, cnt = np.zeros_like(pad), np.zeros((*pad.shape[:2], 1))
    for oy in range(0, block, step):
        for ox in range(0, block, step):
            sub = pad[oy : oy + nby * block, ox : ox + nbx * block].reshape(nby, block, nbx, block, 3)
            coef = fft.dctn(sub, axes=(1, 3), norm="ortho")
            dc = coef[:, 0, :, 0].copy()
            coef[np.abs(coef) < 2.7 * sigma] = 0.0
            coef[:, 0, :, 0] = dc
            rec = fft.idctn(coef, axes=(1, 3), norm="ortho").reshape(nby * block, nbx * block, 3)
            acc[oy : oy + nby * block, ox : ox + nbx * block] += rec
            cnt[oy : oy + nby * block, ox : ox + nbx * block] += 1
    return (acc / np.maximum(cnt, 1))[block : block + h, block : block + w] @ opp


def warp(x: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Samples every channel at (y - dy, x - dx), bilinear, reflected borders (KADIS ``imwarpmap``)."""
    yy, xx = np.mgrid[0 : x.shape[0], 0 : x.shape[1]].astype(np.float64)
    coords = np.stack([yy - dy, xx - dx])
    chans = [ndimage.map_coordinates(x[..., c], coords, order=1, mode="reflect") for c in range(x.shape[2])]
    return np.stack(chans, -1)


def shift(channel: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translates a 2-D array by (dy, dx) pixels, filling the uncovered border by edge replication."""
    h, w = channel.shape
    pad = np.pad(channel, ((abs(dy), abs(dy)), (abs(dx), abs(dx))), mode="edge")
    return pad[abs(dy) - dy : abs(dy) - dy + h, abs(dx) - dx : abs(dx) - dx + w]


# ----------------------------------------------------------------------------------------------------
# Tone curves, normalisation, thresholds
# ----------------------------------------------------------------------------------------------------
def quad_curve(x: np.ndarray, mid: float) -> np.ndarray:
    """The parabola through (0, 0), (0.5, ``mid``), (1, 1), clipped to [0, 1] (KADIS ``curves``)."""
    return np.clip((2 - 4 * mid) * x * x + (4 * mid - 1) * x, 0.0, 1.0)


def pchip_curve(x: np.ndarray, xs: list[float], ys: list[float]) -> np.ndarray:
    """A monotone cubic tone curve through the control points, clipped to [0, 1]."""
    return np.clip(PchipInterpolator(xs, ys)(x), 0.0, 1.0)


def mapmm(e: np.ndarray) -> np.ndarray:
    """Min-max normalisation to [0, 1] (KADIS ``mapmm``); a constant array is returned unchanged."""
    lo, hi = float(e.min()), float(e.max())
    return (e - lo) / (hi - lo) if hi > lo else e


def multithresh(u8: np.ndarray, n: int, iters: int = 100) -> np.ndarray:
    """``n`` thresholds (0..255 scale) that split the pooled histogram into n+1 classes of minimum
    within-class variance, like MATLAB ``multithresh`` (multi-level Otsu). Otsu's criterion equals 1-D
    k-means, so this runs Lloyd's iterations on the 256-bin histogram, started from quantiles."""
    hist = np.bincount(u8.ravel(), minlength=256).astype(np.float64)
    v = np.arange(256, dtype=np.float64)
    cdf = np.cumsum(hist) / hist.sum()
    centres = v[np.minimum(np.searchsorted(cdf, (np.arange(n + 1) + 0.5) / (n + 1)), 255)]
    for _ in range(iters):
        idx = np.searchsorted((centres[:-1] + centres[1:]) / 2, v, side="left")
        cnt = np.bincount(idx, weights=hist, minlength=n + 1)
        sums = np.bincount(idx, weights=hist * v, minlength=n + 1)
        new = np.where(cnt > 0, sums / np.maximum(cnt, 1e-12), centres)
        if np.allclose(new, centres):
            break
        centres = new
    return (centres[:-1] + centres[1:]) / 2


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats → uint8 with rounding and clipping."""
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------
# The 25 operations. Each takes a float image in [0, 1], the level's parameter and a numpy Generator,
# and returns a float image (clipped later) or a uint8 image. See the table in distortions.py.
# ----------------------------------------------------------------------------------------------------
def _op(name: str) -> Callable[[Op], Op]:
    def deco(fn: Op) -> Op:
        OPERATIONS[name] = fn
        return fn

    return deco


def _rng_noise(x: np.ndarray, var: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(x + rng.normal(0.0, np.sqrt(var), x.shape), 0.0, 1.0)


def _pil(x: np.ndarray) -> Image.Image:
    return Image.fromarray(to_uint8(x))


@_op("gaussian_blur")
def _gaussian_blur(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    return gaussian_blur(x, p)


@_op("lens_blur")
def _lens_blur(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    return convolve(x, disk_kernel(p))


@_op("motion_blur")
def _motion_blur(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    return convolve(x, motion_kernel(p, rng.uniform(0.0, 180.0)))


@_op("color_diffusion")
def _color_diffusion(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    lab = rgb_to_lab(x)
    lab[..., 1:] = gaussian_blur(lab[..., 1:], 1.5 * p + 2) * p
    return lab_to_rgb(lab)


@_op("color_shift")
def _color_shift(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    gy, gx = np.gradient(x @ LUMA)
    e = mapmm(gaussian_blur(np.hypot(gy, gx)[..., None], 4.0)[..., 0])
    e = np.clip(e, 0.1, 1.0)
    lo, hi = np.percentile(e, [1, 99])
    e = mapmm(np.clip(e, lo, hi))
    direction = rng.random(2) + 1e-12
    dy, dx = np.round(direction / np.linalg.norm(direction) * p).astype(int)
    out = x.copy()
    out[..., 1] = shift(x[..., 1], int(dy), int(dx)) * e + x[..., 1] * (1 - e)
    return out


@_op("color_quantization")
def _color_quantization(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    img = _pil(x)
    palette = img.quantize(colors=int(p), method=Image.Quantize.MEDIANCUT, kmeans=2, dither=Image.Dither.NONE)
    return np.asarray(img.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).convert("RGB"))


@_op("color_saturation1")
def _color_saturation1(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    hsv = rgb_to_hsv(x)
    hsv[..., 1] *= p
    return hsv_to_rgb(hsv)


@_op("color_saturation2")
def _color_saturation2(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    lab = rgb_to_lab(x)
    lab[..., 1:] *= p
    return lab_to_rgb(lab)


@_op("jpeg2000")
def _jpeg2000(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    if not features.check("jpg_2000"):
        raise RuntimeError("jpeg2000 needs Pillow built with OpenJPEG (PIL.features.check('jpg_2000'))")
    buf = io.BytesIO()
    resolutions = int(np.clip(np.log2(min(x.shape[:2])), 1, 6))  # OpenJPEG needs 2^(n-1) <= min side
    _pil(x).save(
        buf,
        "JPEG2000",
        quality_mode="rates",
        quality_layers=[float(p)],
        irreversible=True,
        num_resolutions=resolutions,
    )
    return np.asarray(Image.open(buf).convert("RGB"))


@_op("jpeg")
def _jpeg(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    buf = io.BytesIO()
    _pil(x).save(buf, "JPEG", quality=int(p))
    return np.asarray(Image.open(buf).convert("RGB"))


@_op("white_noise")
def _white_noise(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    return _rng_noise(x, p, rng)


@_op("white_noise_color_component")
def _white_noise_color_component(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    return ycbcr_to_rgb(_rng_noise(rgb_to_ycbcr(x), p, rng))


@_op("impulse_noise")
def _impulse_noise(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    u = rng.random(x.shape)
    return np.where(u < p / 2, 0.0, np.where(u < p, 1.0, x))


@_op("multiplicative_noise")
def _multiplicative_noise(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    return x + np.sqrt(12 * p) * x * (rng.random(x.shape) - 0.5)


@_op("denoise")
def _denoise(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    return dct_denoise(_rng_noise(x, p, rng), float(np.sqrt(p)))


def _tone(x: np.ndarray, mid: float) -> np.ndarray:
    lab = rgb_to_lab(x)
    lab[..., 0] = quad_curve(lab[..., 0] / 100.0, mid) * 100.0
    return (2 * quad_curve(x, mid) + lab_to_rgb(lab)) / 3


@_op("brighten")
def _brighten(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    return _tone(x, 0.5 + p / 2)


@_op("darken")
def _darken(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    return _tone(x, 0.5 - p / 2)


@_op("mean_shift")
def _mean_shift(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    return x + p


@_op("jitter")
def _jitter(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    for _ in range(5):
        x = warp(x, rng.normal(0.0, p, x.shape[:2]), rng.normal(0.0, p, x.shape[:2]))
    return x


@_op("non_eccentricity_patch")
def _non_eccentricity_patch(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    size = max(1, min(16, min(h, w) // 4))  # patch side and maximal displacement (KADIS: 16 and 16)
    out = x.copy()
    for _ in range(int(p)):  # sequential, so patches may carry earlier copies, as in KADIS
        y0 = round(rng.random() * (h - 3 * size)) + size
        x0 = round(rng.random() * (w - 3 * size)) + size
        y1 = round((rng.random() - 0.5) * size) + y0
        x1 = round((rng.random() - 0.5) * size) + x0
        out[y1 : y1 + size, x1 : x1 + size] = out[y0 : y0 + size, x0 : x0 + size].copy()
    return out


@_op("pixelate")
def _pixelate(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    z = 0.95 - p**0.6
    small_size = (max(1, int(np.ceil(z * w))), max(1, int(np.ceil(z * h))))
    small = _pil(x).resize(small_size, Image.Resampling.NEAREST)
    return np.asarray(small.resize((w, h), Image.Resampling.NEAREST))


@_op("quantization")
def _quantization(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    u8 = to_uint8(x)
    thresholds = multithresh(u8, int(p))
    values = np.concatenate([[0.0], thresholds[1:], [255.0]]) / 255.0
    return values[np.searchsorted(thresholds, u8, side="left")]


@_op("color_block")
def _color_block(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    size = max(1, min(32, min(h, w) // 2))
    out = x.copy()
    for _ in range(int(p)):
        colour = rng.integers(0, 256, 3) / 255.0
        x0, y0 = int(rng.random() * (w - size)), int(rng.random() * (h - size))
        out[y0 : y0 + size, x0 : x0 + size] = colour
    return out


@_op("high_sharpen")
def _high_sharpen(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    lab = rgb_to_lab(x)
    lum = lab[..., :1]
    lab[..., :1] = np.clip(lum + p * (lum - gaussian_blur(lum, 3.0)), 0.0, 100.0)
    return lab_to_rgb(lab)


@_op("contrast_change")
def _contrast_change(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    return pchip_curve(x, [0, 0.25, 0.5, 0.75, 1], [0, 0.25 - p / 4, 0.5, 0.75 + p / 4, 1])
