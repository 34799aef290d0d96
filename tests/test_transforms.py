import numpy as np
import pytest
import torch
from PIL import Image

from kdiqa.data.transforms import EvalTransform, TrainTransform, as_pil


def test_train_crop_and_flip_random_but_seeded():
    img = Image.effect_mandelbrot((80, 60), (-2, -1.5, 1, 1.5), 50).convert("RGB")
    tf = TrainTransform(32)
    torch.manual_seed(0)
    a = tf(img)
    torch.manual_seed(0)
    b = tf(img)
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32 and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    crops = {tuple(tf(img).flatten()[:20].tolist()) for _ in range(10)}
    assert len(crops) > 1


def test_train_pads_small_images_and_resizes():
    assert TrainTransform(64)(Image.new("RGB", (40, 30))).shape == (3, 64, 64)
    out = TrainTransform(32, resize=48)(Image.new("RGB", (200, 100)))
    assert out.shape == (3, 32, 32)


def test_eval_modes():
    img = Image.new("RGB", (50, 40))
    assert EvalTransform("full")(img).shape == (1, 3, 40, 50)
    assert EvalTransform("center", 32)(img).shape == (1, 3, 32, 32)
    assert EvalTransform("crops", 32, 5)(img).shape == (10, 3, 32, 32)
    assert EvalTransform("crops", 32, 3, flip=False)(img).shape == (3, 3, 32, 32)
    assert EvalTransform("full", max_short=20)(img).shape == (1, 3, 20, 25)  # downscaled
    assert EvalTransform("full", max_short=64)(img).shape == (1, 3, 40, 50)  # never upscaled
    with pytest.raises(ValueError, match="eval mode"):
        EvalTransform("mean")


def test_crops_are_corners_and_centre():
    t = torch.arange(6 * 8, dtype=torch.float32).view(1, 6, 8).expand(3, -1, -1) / 100
    views = EvalTransform("crops", 4, 5, flip=False)(as_pil(t))
    tl = views[1, 0]
    assert tl[0, 0] == pytest.approx(as_pil(t).getpixel((0, 0))[0] / 255)
    assert views[4, 0, -1, -1] == pytest.approx(as_pil(t).getpixel((7, 5))[0] / 255)


def test_any_number_of_crops_tiles_an_even_grid():
    from kdiqa.data.views import crop_boxes

    # 9 and 25 crops are exactly the 3 x 3 and 5 x 5 grids over the valid offsets (0..dy, 0..dx)
    assert sorted(crop_boxes(40, 48, 32, 9)) == [(y, x) for y in (0, 4, 8) for x in (0, 8, 16)]
    assert sorted(crop_boxes(100, 132, 20, 25)) == [(y, x) for y in (0, 20, 40, 60, 80) for x in (0, 28, 56, 84, 112)]
    five = crop_boxes(40, 48, 32, 5)
    assert all(crop_boxes(40, 48, 32, n)[:5] == five for n in (6, 9, 16, 30))  # more crops only add positions
    for n in (1, 2, 6, 10, 17, 26, 50):
        boxes = crop_boxes(70, 90, 32, n)
        assert len(boxes) == n and all(0 <= y <= 38 and 0 <= x <= 58 for y, x in boxes)
        assert len(set(boxes)) == n  # distinct while the image has room for them
    assert len(crop_boxes(32, 32, 32, 7)) == 7  # one possible position: repeated, the count still holds
    assert EvalTransform("crops", 32, 9)(Image.new("RGB", (50, 40))).shape == (18, 3, 32, 32)
    assert len(crop_boxes(40, 48, 32, np.int64(7))) == 7  # e.g. read from an array
    for bad in (0, -3, 2.0, True):
        with pytest.raises(ValueError, match="n_crops must be a positive integer"):
            EvalTransform("crops", 32, bad)
    with pytest.raises(ValueError, match="pad it first"):
        crop_boxes(20, 40, 32, 5)


def test_as_pil_rejects_bad_shapes():
    with pytest.raises(ValueError, match="CHW"):
        as_pil(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="HxW"):
        as_pil(np.zeros((4, 4, 5), np.uint8))
    assert as_pil(np.zeros((4, 4), np.float32)).mode == "RGB"
