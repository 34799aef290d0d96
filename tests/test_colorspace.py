"""Colour conversions behind the distortions, against published reference values and round trips."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from kdiqa.data.colorspace import hsv_to_rgb, lab_to_rgb, rgb_to_hsv, rgb_to_lab, rgb_to_ycbcr, ycbcr_to_rgb


@pytest.mark.parametrize(
    ("rgb", "lab"),
    [
        ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
        ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        # sRGB primaries under D65, as MATLAB's rgb2lab gives them
        ((1.0, 0.0, 0.0), (53.2408, 80.0925, 67.2032)),
        ((0.0, 1.0, 0.0), (87.7347, -86.1827, 83.1793)),
        ((0.0, 0.0, 1.0), (32.2970, 79.1875, -107.8602)),
    ],
)
def test_lab_reference_values(rgb, lab):
    np.testing.assert_allclose(rgb_to_lab(np.array(rgb)), lab, atol=2e-3)


def test_lab_round_trip_and_out_of_gamut_clipped():
    x = np.random.default_rng(0).random((8, 8, 3))
    np.testing.assert_allclose(lab_to_rgb(rgb_to_lab(x)), x, atol=1e-6)
    far = lab_to_rgb(np.array([50.0, 200.0, -200.0]))  # no sRGB colour has this chroma
    assert far.min() >= 0.0 and far.max() <= 1.0


def test_hsv_matches_colorsys_and_round_trips():
    x = np.random.default_rng(1).random((6, 7, 3))
    expected = np.array([[colorsys.rgb_to_hsv(*px) for px in row] for row in x])
    np.testing.assert_allclose(rgb_to_hsv(x), expected, atol=1e-12)
    np.testing.assert_allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-12)
    grey = rgb_to_hsv(np.full(3, 0.4))
    np.testing.assert_allclose(grey, (0.0, 0.0, 0.4))


def test_negative_saturation_gives_the_complementary_hue():
    hsv = rgb_to_hsv(np.array([0.5, 0.1, 0.1]))  # a dark red: h 0, s 0.8, v 0.5
    flipped = hsv_to_rgb(hsv * np.array([1.0, -1.0, 1.0]))
    np.testing.assert_allclose(flipped, (0.5, 0.9, 0.9))  # cyan-ish: G and B rise above R
    assert hsv_to_rgb(np.array([0.0, -0.8, 1.0])).max() == 1.0  # clipped to [0, 1]


def test_ycbcr_studio_range():
    np.testing.assert_allclose(rgb_to_ycbcr(np.ones(3)), np.array([235.0, 128.0, 128.0]) / 255, atol=1e-4)
    np.testing.assert_allclose(rgb_to_ycbcr(np.zeros(3)), np.array([16.0, 128.0, 128.0]) / 255, atol=1e-12)
    x = np.random.default_rng(2).random((5, 5, 3))
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-12)
