import io

import numpy as np
import pytest
from PIL import Image

from kdiqa.data.io import ImageLoadError, load_image


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_exif_orientation_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))  # blue stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(img, tmp_path / "rot.jpg", exif=exif, quality=95)
    out = load_image(path)
    assert out.size == (20, 40)
    arr = np.asarray(out)
    assert arr[2, 10, 2] > 200 and arr[2, 10, 0] < 60  # the blue stripe is now at the top


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "1"])
def test_modes_become_rgb(tmp_path, mode):
    img = Image.new("RGB", (16, 12), (200, 100, 50)).convert(mode)
    ext = "jpg" if mode == "CMYK" else "png"
    out = load_image(_save(img, tmp_path / f"x_{mode}.{ext}"))
    assert out.mode == "RGB" and out.size == (16, 12)


def test_rgba_composited_over_white(tmp_path):
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert np.asarray(load_image(_save(img, tmp_path / "t.png"))).min() == 255


def test_16bit_grayscale_is_rescaled_not_clipped(tmp_path):
    arr = np.full((10, 10), 32768, dtype=np.uint16)  # half of the 16-bit range
    path = _save(Image.fromarray(arr), tmp_path / "g16.png")
    with Image.open(path) as raw:
        assert raw.mode in ("I;16", "I")
    out = np.asarray(load_image(path))
    assert out.shape == (10, 10, 3)
    assert abs(int(out[0, 0, 0]) - 128) <= 1


def test_cmyk_colour_is_preserved(tmp_path):
    out = np.asarray(
        load_image(_save(Image.new("RGB", (8, 8), (255, 0, 0)).convert("CMYK"), tmp_path / "c.jpg", quality=100))
    )
    assert out[..., 0].mean() > 200 and out[..., 1].mean() < 60


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: None, "file not found"),
        (lambda p: p.write_bytes(b""), "file is empty"),
        (lambda p: p.write_text("hello, not an image"), "not an image file"),
    ],
)
def test_bad_files_raise_one_clear_error(tmp_path, make, reason):
    path = tmp_path / "bad.jpg"
    make(path)
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert str(path) in str(info.value) and reason in str(info.value)


def test_truncated_file(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buf, "JPEG")
    path = tmp_path / "trunc.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match=r"trunc\.jpg: cannot decode image"):
        load_image(path)


def test_directory_is_rejected(tmp_path):
    with pytest.raises(ImageLoadError, match="is a directory"):
        load_image(tmp_path)


def test_decompression_bomb_guard_kept(tmp_path, monkeypatch):
    path = _save(Image.new("RGB", (200, 200)), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 200² > 2 × 1000 → Pillow's bomb error
    with pytest.raises(ImageLoadError, match="decompression-bomb"):
        load_image(path)
