"""Shared fixtures. Tests run on the CPU with one thread and make their own small data."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same global RNG state, whatever ran before it: timed tests call their
    models a varying number of times, which would otherwise change the next test's random models."""
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)  # legacy global state, for libraries that still draw from it


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs the project's shared data at {path} (not part of a user's clone)")
    return path


def default_int8_max_diff() -> float:
    """How far (MOS points) the default's int8 scores may stray from torch: half again the largest |int8 - torch|
    that its bundled export measured on CLIVE test, since the example photos (synthetic blur, noise, JPEG) are not
    CLIVE photos.

    Tests hold the int8 file to its own parity report; the bound itself must stay small."""
    import json

    from kdiqa.runtime.scorer import resolve_onnx_folder

    report = json.loads((resolve_onnx_folder("default") / "export.json").read_text())
    worst = 100 * report["parity_labelled"]["int8"]["max_abs_diff_vs_torch"]
    assert worst < 10, f"the default's int8 export differs from torch by up to {worst:.1f} MOS points"
    return 1.5 * worst


def synthetic_photo(size: tuple[int, int] = (64, 48), seed: int = 0, quality: float = 1.0) -> Image.Image:
    """A natural-ish RGB image: gradients, edges and texture; ``quality`` < 1 blurs and adds noise."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 5 + yy / 7)], axis=-1)
    img[(xx // 8 + yy // 8) % 2 == 0] *= 0.6
    img += rng.normal(0, 0.03, img.shape)
    if quality < 1:
        img = 0.5 * img + 0.5 * img.mean(axis=(0, 1))
        img += rng.normal(0, 0.3 * (1 - quality), img.shape)
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


@pytest.fixture
def rated_folder(tmp_path: Path) -> Path:
    """A folder with 24 images and labels.csv (image,mos,std,split); MOS follows image quality."""
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = ["image,mos,std,split"]
    for i in range(24):
        q = float(rng.uniform(0.2, 1.0))
        name = f"img_{i:02d}.png"
        synthetic_photo((72, 64), seed=i, quality=q).save(folder / name)
        split = "test" if i % 4 == 0 else "train"
        lines.append(f"{name},{q * 100:.2f},5.0,{split}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def tiny_teacher_and_photos(tmp_path: Path) -> tuple[Path, Path]:
    """A saved random ``iqa_test_tiny`` checkpoint (a teacher) and a folder of 4 unrated 64 px photos."""
    import kdiqa
    from kdiqa.checkpoint import save_model

    teacher = save_model(kdiqa.create_model("iqa_test_tiny"), tmp_path / "teacher")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        synthetic_photo((64, 64), seed=i).save(photos / f"{i}.png")
    return teacher, photos
