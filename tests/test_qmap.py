"""Quality maps: grid geometry, the torch and ONNX backends, the overlay picture and `kdiqa score --map`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

import kdiqa
from kdiqa.cli import main
from kdiqa.runtime import OnnxScorer, PreprocessConfig, quality_map
from kdiqa.runtime.overlay import BAR_WIDTH, render_overlay
from kdiqa.runtime.qmap import default_patch, grid_positions

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


class Brightness:
    """A backend whose score of a view is its mean brightness: maps are predictable by hand."""

    name = "brightness"

    def __init__(self, **views) -> None:
        self.cfg = PreprocessConfig("brightness", score_range=(0.0, 100.0), **views)
        self.calls: list[tuple] = []

    def predict(self, batch):
        self.calls.append(batch.shape)
        return batch.mean(axis=(1, 2, 3))


@pytest.mark.parametrize(
    ("length", "patch", "stride", "expected"),
    [(100, 40, 30, [0, 30, 60]), (97, 32, 16, [0, 16, 32, 48, 64, 65]), (64, 32, 32, [0, 32]), (20, 32, 16, [0])],
)
def test_grid_positions_cover_the_axis(length, patch, stride, expected):
    pos = grid_positions(length, patch, stride)
    assert pos.tolist() == expected
    assert pos[-1] + patch >= length  # the last patch reaches the end (padded when the image is smaller)


def test_grid_positions_reject_bad_sizes():
    with pytest.raises(ValueError, match="positive"):
        grid_positions(100, 0, 10)


def test_map_geometry_for_odd_sizes_and_every_patch_scored_once():
    img = np.zeros((61, 97, 3), np.uint8)
    img[:, 48:] = 255
    backend = Brightness()
    m = quality_map(backend, img, patch=32, stride=16, max_batch=7)
    assert m.shape == (3, 6) and m.ys.tolist() == [0, 16, 29] and m.xs.tolist() == [0, 16, 32, 48, 64, 65]
    assert m.size == m.original_size == (97, 61) and m.scale == 1.0
    assert sum(s[0] for s in backend.calls) == 18 and max(s[0] for s in backend.calls) == 7  # batched, once each
    assert {s[2:] for s in backend.calls} == {(32, 32)}
    # columns left of the edge are black (0), right of it white (100), the one across it half and half
    assert m.scores[:, 0].tolist() == [0.0] * 3 and m.scores[:, -1].tolist() == [100.0] * 3
    np.testing.assert_allclose(m.scores[:, 2], 100 * 16 / 32)
    dense = m.dense()
    assert dense.shape == (61, 97) and dense[:, :16].max() == 0 and dense[:, 81:].min() == 100
    assert m.relative_cost == pytest.approx(18 * 32 * 32 / (97 * 61))
    payload = m.to_json()
    assert payload["rows"] == 3 and payload["cols"] == 6 and len(payload["scores"][0]) == 6
    json.dumps(payload)  # JSON-ready


def test_map_of_an_image_smaller_than_the_patch_is_one_padded_patch():
    m = quality_map(Brightness(), np.full((20, 30, 3), 255, np.uint8), patch=32)
    assert m.shape == (1, 1) and m.scores[0, 0] == pytest.approx(100.0)


def test_default_patch_follows_the_views_and_the_image_is_prepared_as_for_its_score():
    backend = Brightness(crop=64, max_short=50)
    m = quality_map(backend, np.zeros((100, 160, 3), np.uint8))
    assert m.size == (80, 50) and m.original_size == (160, 100) and m.scale == 0.5
    assert m.patch == default_patch(backend.cfg, 80, 50) == 32 == 2 * m.stride  # half the shorter side
    assert default_patch(backend.cfg, 1000, 800) == 64  # the model's crop when the image is large


def _half_degraded(kind: str) -> Image.Image:
    img = Image.open(EXAMPLES / "astronaut.jpg").convert("RGB")
    w, h = img.size
    right = img.crop((w // 2, 0, w, h))
    if kind == "blur":
        right = right.filter(ImageFilter.GaussianBlur(4))
    else:
        a = np.asarray(right, dtype=np.float64) + np.random.default_rng(0).normal(0, 40, (h, w - w // 2, 3))
        right = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    img.paste(right, (w // 2, 0))
    return img


@pytest.mark.parametrize(
    ("name", "kind", "gap"),
    [("default", "blur", 10), ("default", "noise", 3), ("mid", "blur", 10), ("mid", "noise", 10)],
)
def test_the_degraded_half_of_a_photo_scores_lower_on_the_map(name, kind, gap):
    # Measured (docs/serve.md): the default (edge tier) blur 69 -> 32, noise 70 -> 66; the mid tier blur 70 -> 28,
    # noise 72 -> 56. The edge tier sees heavy noise only weakly: its map is held to the mean gap alone there.
    model = kdiqa.load(name)
    m = model.quality_map(_half_degraded(kind))
    dense, half = m.dense(), m.size[0] // 2
    left, right = dense[:, :half].mean(), dense[:, half:].mean()
    assert right < left - gap, (kind, left, right)
    if gap >= 10:  # every patch of the left column beats the right column
        assert m.scores[:, 0].min() > m.scores[:, -1].max()


def test_torch_and_onnx_maps_agree():
    img = _half_degraded("blur")
    torch_map = kdiqa.load("default").quality_map(img, patch=128, stride=96)
    onnx_map = OnnxScorer("default", threads=1).quality_map(img, patch=128, stride=96)
    assert onnx_map.shape == torch_map.shape and onnx_map.size == torch_map.size
    np.testing.assert_allclose(onnx_map.scores, torch_map.scores, atol=0.01)  # MOS points


def test_overlay_has_the_colour_bar_and_colours_low_red_high_green():
    img = np.zeros((60, 100, 3), np.uint8)
    img[:, 50:] = 255
    backend = Brightness()
    m = quality_map(backend, img, patch=50, stride=50)
    pic = np.asarray(render_overlay(img, m, alpha=1.0))
    assert pic.shape == (60, 100 + BAR_WIDTH, 3)
    low, high = pic[30, 10].astype(int), pic[30, 90].astype(int)
    assert low[0] > low[1] and high[1] > high[0]  # RdYlGn: red where the score is 0, green where it is 100
    bar = pic[:, 100 + 10]
    assert bar[9][1] > bar[9][0] and bar[-10][0] > bar[-10][1]  # the bar: high (green) on top, low (red) below
    with pytest.raises(ValueError, match="colour map"):
        render_overlay(img, m, cmap="no-such-map")


def test_score_map_writes_a_picture_and_grid_per_image_and_reports_failures(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    Image.open(EXAMPLES / "coffee.jpg").save(a / "x.png")
    Image.open(EXAMPLES / "chelsea.jpg").save(b / "x.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "maps"
    args = [str(a / "x.png"), str(b / "x.png"), str(tmp_path / "broken.jpg"), "--map", str(out), "--quiet"]
    rc = main(["score", *args, "--model", "edge", "--map-patch", "96", "--map-stride", "64"])
    assert rc == 1  # one image failed, the others were scored and mapped
    assert sorted(p.name for p in out.iterdir()) == ["x-2.json", "x-2.png", "x.json", "x.png"]
    grid = json.loads((out / "x.json").read_text())
    assert grid["patch"] == 96 and grid["stride"] == 64 and grid["image"].endswith("a/x.png")
    assert np.asarray(grid["scores"]).shape == (grid["rows"], grid["cols"])
    with Image.open(out / "x.png") as pic:
        assert pic.size == (grid["size"][0] + BAR_WIDTH, grid["size"][1])
    assert "broken.jpg" in capsys.readouterr().err
