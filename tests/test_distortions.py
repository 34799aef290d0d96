"""The 25 KADID-10k / KADIS-700k distortions: API, shapes, determinism and severity ordering."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image, features

from kdiqa.data.distortions import (
    DISTORTIONS,
    apply_chain,
    apply_distortion,
    distortion_params,
    distortion_spec,
    list_distortions,
)

NAMES = list_distortions()
RANDOM = [s.name for s in DISTORTIONS if s.random]
HAS_J2K = features.check("jpg_2000")
NEUTRAL_AT_3 = ("mean_shift", "contrast_change")  # run from one extreme through identity to the other
NOT_ORDERED = ("color_saturation2",)  # level 1 is the identity, checked separately


def natural_image(h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    """Gradients, hard edges, a disc, stripes and smoothed-noise texture, in colour: uint8 HxWx3."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([0.2 + 0.6 * xx / w, 0.3 + 0.5 * yy / h, 0.5 + 0.2 * np.sin(xx / 6)], -1)
    img[8:30, 10:40] = (0.85, 0.2, 0.15)  # a red rectangle
    img[(yy - 40) ** 2 + (xx - 70) ** 2 < 14**2] = (0.1, 0.35, 0.8)  # a blue disc
    img[40:60, 5:35] *= 0.75 + 0.25 * np.sign(np.sin(xx[40:60, 5:35] / 1.5))[..., None]  # stripes
    noise = rng.normal(0, 1, (h, w, 3))
    kernel = np.outer(*2 * [np.array([1, 4, 6, 4, 1]) / 16])
    tex = sum(kernel[i, j] * np.roll(noise, (i - 2, j - 2), (0, 1)) for i in range(5) for j in range(5))
    img += 0.06 * tex
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def skip_j2k(name: str) -> None:
    if name == "jpeg2000" and not HAS_J2K:
        pytest.skip("Pillow built without OpenJPEG")


def mse(a: Image.Image, b: np.ndarray) -> float:
    return float(((np.asarray(a).astype(np.float64) - b.astype(np.float64)) ** 2).mean())


@pytest.fixture(scope="module")
def img() -> np.ndarray:
    return natural_image()


def test_table_and_registry():
    assert len(NAMES) == 25
    assert [s.kadid_index for s in DISTORTIONS] == list(range(1, 26))
    assert NAMES[0] == "gaussian_blur" and NAMES[-1] == "contrast_change"
    for spec in DISTORTIONS:
        assert len(spec.params) == 5 and spec.operation
        assert distortion_params(spec.name) == spec.params
        assert distortion_spec(spec.name) is spec
    assert distortion_params("jpeg") == (43, 36, 24, 7, 4)
    assert distortion_params("mean_shift")[2] == 0 and distortion_params("contrast_change")[2] == 0


@pytest.mark.parametrize("name", NAMES)
def test_every_level_keeps_shape_mode_dtype(name, img):
    skip_j2k(name)
    small = img[:40, :56]  # non-square
    for level in range(1, 6):
        out = apply_distortion(small, name, level, seed=level)
        assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (56, 40)
        assert np.asarray(out).dtype == np.uint8


@pytest.mark.parametrize("name", NAMES)
def test_tiny_and_pil_input(name, img):
    skip_j2k(name)
    tiny = img[:8, :11]
    assert apply_distortion(tiny, name, 5).size == (11, 8)
    pil = Image.fromarray(img[:24, :30])
    assert np.array_equal(
        np.asarray(apply_distortion(pil, name, 3)), np.asarray(apply_distortion(img[:24, :30], name, 3))
    )
    assert np.array_equal(
        np.asarray(apply_distortion(pil.convert("RGBA"), name, 3)), np.asarray(apply_distortion(pil, name, 3))
    )


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output(name, img):
    skip_j2k(name)
    copy = img.copy()
    a = np.asarray(apply_distortion(img, name, 4, seed=123))
    b = np.asarray(apply_distortion(img, name, 4, seed=123))
    assert np.array_equal(a, b)
    assert np.array_equal(img, copy), "input array must not be modified"


@pytest.mark.parametrize("name", RANDOM)
def test_different_seed_differs_for_random_types(name, img):
    outs = [np.asarray(apply_distortion(img, name, 5, seed=s)) for s in range(4)]
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])


def test_deterministic_types_ignore_seed(img):
    for name in ("gaussian_blur", "jpeg", "pixelate", "quantization", "contrast_change"):
        a, b = apply_distortion(img, name, 4, seed=0), apply_distortion(img, name, 4, seed=99)
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_global_rng_untouched(img):
    np.random.seed(5)
    expected = np.random.random()
    np.random.seed(5)
    apply_distortion(img, "white_noise", 3, seed=1)
    apply_distortion(img, "color_block", 3, seed=1)
    assert np.random.random() == expected


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NEUTRAL_AT_3 + NOT_ORDERED])
def test_severity_rises_with_level(name, img):
    """PSNR to the reference does not rise from level 1 to 5 (0.3 dB tolerance)."""
    skip_j2k(name)
    errs = [mse(apply_distortion(img, name, level, seed=0), img) for level in range(1, 6)]
    psnr = [10 * np.log10(255**2 / max(e, 1e-10)) for e in errs]
    assert all(b <= a + 0.3 for a, b in itertools.pairwise(psnr)), (name, np.round(psnr, 2))
    assert psnr[4] < psnr[0] - 1.0, (name, np.round(psnr, 2))


def test_color_saturation2_level1_is_identity_then_rises(img):
    errs = [mse(apply_distortion(img, "color_saturation2", level), img) for level in range(1, 6)]
    assert errs[0] < 1.0  # factor 1: only the Lab round trip
    assert all(b >= a for a, b in itertools.pairwise(errs))


@pytest.mark.parametrize("name", NEUTRAL_AT_3)
def test_neutral_level_three_and_growing_deviation(name, img):
    outs = [np.asarray(apply_distortion(img, name, level)).astype(np.float64) for level in range(1, 6)]
    assert np.array_equal(outs[2], img)  # level 3: parameter 0, the identity
    errs = [mse(o, img) for o in outs]
    assert errs[0] > errs[1] > 0 and errs[4] > errs[3] > 0
    ref_mean, ref_std = img.mean(), img.std()
    if name == "mean_shift":  # 1-2 brighter (1 most), 4-5 darker (5 most)
        means = [o.mean() for o in outs]
        assert means[0] > means[1] > ref_mean > means[3] > means[4]
    else:  # 1-2 more contrast (1 most), 4-5 less (5 least)
        stds = [o.std() for o in outs]
        assert stds[0] > stds[1] > ref_std > stds[3] > stds[4]


def test_brighten_and_darken_move_the_mean(img):
    bright = [np.asarray(apply_distortion(img, "brighten", lv)).mean() for lv in range(1, 6)]
    dark = [np.asarray(apply_distortion(img, "darken", lv)).mean() for lv in range(1, 6)]
    assert img.mean() < bright[0] < bright[-1]
    assert img.mean() > dark[0] > dark[-1]


def test_chain_matches_steps_and_is_deterministic(img):
    chain = [("gaussian_blur", 2), ("white_noise", 3), ("jpeg", 4)]
    a = apply_chain(img, chain, seed=11)
    assert np.array_equal(np.asarray(a), np.asarray(apply_chain(img, chain, seed=11)))
    assert not np.array_equal(np.asarray(a), np.asarray(apply_chain(img, chain, seed=12)))
    step = img
    for i, (name, level) in enumerate(chain):
        step = np.asarray(apply_distortion(step, name, level, seed=[11, i]))
    assert np.array_equal(np.asarray(a), step)
    assert a.size == (96, 64) and a.mode == "RGB"
    assert np.array_equal(np.asarray(apply_chain(img, [])), img)


def test_chain_validates_before_running(img):
    with pytest.raises(KeyError, match="Did you mean"):
        apply_chain(img, [("jpeg", 2), ("gausian_blur", 1)])
    with pytest.raises(ValueError, match="level"):
        apply_chain(img, [("jpeg", 2), ("white_noise", 6)])


def test_unknown_name_suggests(img):
    with pytest.raises(KeyError, match="Did you mean 'gaussian_blur'"):
        apply_distortion(img, "gausian_blur", 1)
    with pytest.raises(KeyError, match="Did you mean"):
        distortion_params("jpeg200")


@pytest.mark.parametrize("level", [0, 6, -1, 2.5, True, "3"])
def test_bad_level(level, img):
    with pytest.raises(ValueError, match="level"):
        apply_distortion(img, "jpeg", level)


def test_bad_images():
    with pytest.raises(ValueError, match="at least 8x8"):
        apply_distortion(np.zeros((7, 20, 3), np.uint8), "jpeg", 1)
    with pytest.raises(ValueError, match="uint8"):
        apply_distortion(np.zeros((16, 16, 3), np.float32), "jpeg", 1)
    with pytest.raises(ValueError, match="HxWx3"):
        apply_distortion(np.zeros((16, 16), np.uint8), "jpeg", 1)
    with pytest.raises(TypeError):
        apply_distortion([[0]], "jpeg", 1)
