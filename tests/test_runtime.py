"""The torch-free runtime: numpy views equal to torchvision's ops, and scoring with torch blocked."""

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import default_int8_max_diff, synthetic_photo
from PIL import Image

import kdiqa
from kdiqa.data.transforms import EvalTransform
from kdiqa.runtime import PreprocessConfig, make_views


@pytest.mark.parametrize(
    ("size", "mode", "crop", "n_crops", "max_short"),
    [
        ((70, 50), "full", 32, 5, None),
        ((70, 50), "center", 32, 5, None),
        ((70, 50), "crops", 32, 5, None),
        ((70, 50), "crops", 32, 2, None),
        ((70, 50), "crops", 32, 9, None),  # the 3 x 3 grid
        ((61, 47), "crops", 24, 25, None),  # the 5 x 5 grid, offsets not divisible by 4
        ((40, 30), "crops", 48, 7, None),  # more crops than distinct positions in a padded image
        ((40, 30), "crops", 48, 5, None),  # padded by reflection
        ((20, 12), "center", 48, 1, None),  # smaller than half the crop: edge replication
        ((300, 200), "crops", 64, 5, 100),  # downscaled first
        ((90, 60), "full", 32, 5, 40),
    ],
)
def test_numpy_views_equal_torchvision_views(size, mode, crop, n_crops, max_short):
    """make_views against torchvision's own conversion, padding, crop and flip ops at the same positions."""
    import torch
    import torchvision.transforms.v2.functional as TF

    from kdiqa.data.io import resize_short
    from kdiqa.data.views import crop_boxes

    photo = synthetic_photo(size, seed=3)
    img = resize_short(photo, max_short) if max_short and min(photo.size) > max_short else photo
    t = TF.to_dtype(TF.to_image(img), torch.float32, scale=True)
    if mode == "full":
        ref = t[None]
    else:
        ph, pw = max(0, crop - t.shape[1]), max(0, crop - t.shape[2])
        pad_mode = "reflect" if ph < t.shape[1] and pw < t.shape[2] else "replicate"
        t = torch.nn.functional.pad(t[None], (0, pw, 0, ph), mode=pad_mode)[0] if ph or pw else t
        boxes = crop_boxes(t.shape[1], t.shape[2], crop, 1 if mode == "center" else n_crops)
        views = [TF.crop(t, y, x, crop, crop) for y, x in boxes]
        ref = torch.stack(views + ([TF.horizontal_flip(v) for v in views] if mode == "crops" else []))
    cfg = PreprocessConfig("m", mode=mode, crop=crop, n_crops=n_crops, max_short=max_short)
    got = make_views(photo, cfg)
    assert got.dtype == np.float32 and got.shape == tuple(ref.shape)
    np.testing.assert_array_equal(got, ref.numpy())
    np.testing.assert_array_equal(EvalTransform(mode, crop, n_crops, max_short=max_short)(photo).numpy(), got)


def test_five_crops_are_torchvision_five_crop():
    import torch
    import torchvision.transforms.v2.functional as TF

    img = synthetic_photo((72, 56), seed=1)  # even margins: torchvision rounds the centre the same way
    got = make_views(img, PreprocessConfig(mode="crops", crop=32, n_crops=5, flip=False))
    tl, tr, bl, br, centre = TF.five_crop(TF.to_dtype(TF.to_image(img), torch.float32, scale=True), [32, 32])
    np.testing.assert_array_equal(got, torch.stack([centre, tl, tr, bl, br]).numpy())


def test_preprocess_config_validates(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        PreprocessConfig("m", mode="tiles")
    with pytest.raises(ValueError, match="n_crops must be a positive integer, got 0"):
        PreprocessConfig("m", mode="crops", n_crops=0)
    (tmp_path / "preprocess.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"preprocess\.json"):
        PreprocessConfig.read(tmp_path)
    (tmp_path / "preprocess.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a kdiqa ONNX"):
        PreprocessConfig.read(tmp_path)
    cfg = PreprocessConfig("m", score_range=(1, 5), higher_better=False)
    assert PreprocessConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    assert cfg.to_output_scale(0.25) == pytest.approx(4.0)


BLOCK_TORCH = """
import sys
for name in ("torch", "torchvision", "timm"):
    sys.modules[name] = None  # any import of these now raises ImportError
"""


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


def test_runtime_works_without_torch(tmp_path):
    from kdiqa.export import ExportOptions, export_model

    out = tmp_path / "exported"
    export_model(kdiqa.create_model("iqa_test_tiny"), out, ExportOptions(threads=1))
    for i in range(3):
        synthetic_photo((72, 64), seed=i).save(tmp_path / f"img_{i}.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "img_small.jpg")
    code = BLOCK_TORCH + textwrap.dedent(
        f"""
        import json
        from kdiqa.runtime import OnnxScorer
        from kdiqa.cli import main

        scorer = OnnxScorer({str(out)!r}, threads=1)
        score = scorer.score({str(tmp_path / "img_0.png")!r})
        rc = main(["score", {str(tmp_path)!r}, "--backend", "onnx", "--model", {str(out)!r},
                   "--output", {str(tmp_path / "s.json")!r}, "--quiet", "--threads", "1"])
        # the bundled export of the default model: no --model, no export step
        rc_default = [main(["score", {str(EXAMPLES)!r}, "--backend", "onnx", *extra, "--threads", "1",
                            "--output", {str(tmp_path)!r} + f"/default{{i}}.csv", "--workers", "2"])
                      for i, extra in enumerate([[], ["--int8"]])]
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "timm", "scipy")
                        and sys.modules[m] is not None)
        print(json.dumps({{"score": score, "rc": rc, "rc_default": rc_default, "loaded": loaded}}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rc"] == 0 and result["rc_default"] == [0, 0] and result["loaded"] == []
    assert 0 <= result["score"] <= 100
    scores = json.loads((tmp_path / "s.json").read_text())["results"]
    assert len(scores) == 4 and all(r["score"] is not None for r in scores)
    assert "img/s" in proc.stderr  # the progress bar shows the rate
    torch_default = {str(p): kdiqa.load().score(p) for p in sorted(EXAMPLES.glob("*.jpg"))}
    # fp32: the same numbers; int8: within half again the largest difference its export measured on CLIVE test (4.7)
    for i, tol in enumerate((1e-3, default_int8_max_diff())):
        rows = {r["path"]: float(r["score"]) for r in csv.DictReader((tmp_path / f"default{i}.csv").open())}
        assert rows.keys() == torch_default.keys()
        assert max(abs(rows[p] - s) for p, s in torch_default.items()) < tol


def test_runtime_install_has_no_torch_and_torch_commands_say_what_to_install():
    import tomllib
    from pathlib import Path

    meta = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    runtime = meta["dependencies"] + meta["optional-dependencies"]["runtime"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower() for d in runtime}
    assert names == {"numpy", "pillow", "tqdm", "onnxruntime"}
    code = BLOCK_TORCH + textwrap.dedent(
        """
        from kdiqa.cli import main
        raise SystemExit(main(["list-models"]))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "pip install kdiqa[torch]" in proc.stderr and "--backend onnx" in proc.stderr
