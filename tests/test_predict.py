"""The predictor: one score_paths for every backend, the torch backend's views, evaluate's failure handling,
and what `kdiqa score` imports."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import default_int8_max_diff, synthetic_photo
from PIL import Image

import kdiqa
from kdiqa.cli import main
from kdiqa.data.io import ImageLoadError
from kdiqa.data.transforms import EvalTransform
from kdiqa.evaluation import predict_paths
from kdiqa.models.pretrained import resolve_name
from kdiqa.predict import TorchBackend
from kdiqa.runtime import Backend, OnnxScorer, PreprocessConfig, predictor, score_paths

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


class Brightness:
    """A toy backend: the mean brightness of each view, recording the batch shapes it was given."""

    name = "brightness"

    def __init__(self, **views) -> None:
        self.cfg = PreprocessConfig("brightness", score_range=(0.0, 10.0), **views)
        self.shapes: list[tuple] = []
        self.max_batch = None

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.shapes.append(batch.shape)
        return batch.mean(axis=(1, 2, 3))


@pytest.fixture
def photos(tmp_path):
    """Five images of two sizes and two unreadable files, in sorted order."""
    for i in range(5):
        Image.new("RGB", (40 if i % 2 else 48, 32), (50 * i,) * 3).save(tmp_path / f"img_{i}.png")
    (tmp_path / "img_2b.jpg").write_text("not an image")
    (tmp_path / "img_3b.png").write_bytes(b"")
    return sorted(str(p) for p in tmp_path.iterdir())


def test_score_paths_batches_by_size_and_collects_failures(photos):
    backend = Brightness()
    seen = []
    results = score_paths(backend, photos, batch_size=4, progress=False, on_result=seen.append)
    assert [r.path for r in results] == photos and seen == results  # input order, each reported once
    errors = {Path(r.path).name: r.error for r in results if r.error}
    assert errors == {"img_2b.jpg": errors["img_2b.jpg"], "img_3b.png": "file is empty"}
    assert errors["img_2b.jpg"].startswith("not an image")
    scores = [r.score for r in results if r.score is not None]
    assert scores == pytest.approx([10 * 50 * i / 255 for i in range(5)], abs=1e-5)
    # 4 files per batch (img_0, img_1, img_2, img_2b | img_3, img_3b, img_4); in each batch the readable
    # images of equal size share one forward
    assert sorted(backend.shapes) == [(1, 3, 32, 40), (1, 3, 32, 40), (1, 3, 32, 48), (2, 3, 32, 48)]
    backend.shapes.clear()
    score_paths(backend, photos, batch_size=8, progress=False)
    assert sorted(backend.shapes) == [(2, 3, 32, 40), (3, 3, 32, 48)]
    backend.max_batch = 2
    backend.shapes.clear()
    score_paths(backend, photos, batch_size=8, progress=False)
    assert sorted(s[0] for s in backend.shapes) == [1, 2, 2]


def test_threads_decode_ahead_with_the_same_results(photos):
    ref = score_paths(Brightness(mode="crops", crop=24, n_crops=3), photos, progress=False)
    got = score_paths(Brightness(mode="crops", crop=24, n_crops=3), photos, workers=3, progress=False)
    assert got == ref and len(got) == 7


def test_predict_paths_raises_on_an_unreadable_image(photos):
    with pytest.raises(ImageLoadError, match=r"img_2b\.jpg"):
        predictor.predict_paths(Brightness(), photos)
    z = predictor.predict_paths(Brightness(), [p for p in photos if "b." not in p], workers=2)
    np.testing.assert_allclose(z, [50 * i / 255 for i in range(5)], atol=1e-6)


def test_both_backends_follow_the_protocol(tmp_path):
    from kdiqa.export import ExportOptions, export_model

    model = kdiqa.create_model("iqa_test_tiny")
    export_model(model, tmp_path / "onnx", ExportOptions(threads=1))
    torch_backend, onnx_backend = TorchBackend(model), OnnxScorer(tmp_path / "onnx", threads=1)
    assert isinstance(torch_backend, Backend) and isinstance(onnx_backend, Backend)
    assert torch_backend.cfg == onnx_backend.cfg  # the export writes the torch backend's views
    paths = []
    for i in range(4):
        synthetic_photo((64 + 8 * i, 56), seed=i).save(tmp_path / f"p{i}.png")
        paths.append(str(tmp_path / f"p{i}.png"))
    a = [r.score for r in score_paths(torch_backend, paths, progress=False)]
    b = [r.score for r in score_paths(onnx_backend, paths, progress=False)]
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_torch_backend_views_come_from_the_model_or_the_caller(tmp_path):
    model = kdiqa.create_model("iqa_test_tiny")
    assert TorchBackend(model).cfg == PreprocessConfig.for_model(model.cfg)
    paths = []
    for i in range(3):
        synthetic_photo((60, 52), seed=i).save(tmp_path / f"p{i}.png")
        paths.append(str(tmp_path / f"p{i}.png"))
    # the trainers' call (an EvalTransform) and the view configuration give the same numbers
    old = predict_paths(model, paths, EvalTransform("crops", 32, 3, resize=48), 2, channels_last=True)
    new = predict_paths(model, paths, PreprocessConfig(mode="crops", crop=32, n_crops=3, resize=48), 2)
    np.testing.assert_array_equal(old, new)
    with torch.no_grad():  # and both are the mean over the views' forward passes
        views = EvalTransform("crops", 32, 3, resize=48)(Image.open(paths[0]).convert("RGB"))
        assert old[0] == pytest.approx(model(views).mean().item(), abs=1e-6)
    default = predict_paths(model, paths)  # the model's own views (full image)
    assert default[1] == pytest.approx(model.score(paths[1]) / 100, abs=1e-6)
    with pytest.raises(TypeError, match="PreprocessConfig or an EvalTransform"):
        TorchBackend(model, "crops")
    (tmp_path / "bad.png").write_text("x")
    with pytest.raises(ImageLoadError, match=r"bad\.png"):
        predict_paths(model, [*paths, str(tmp_path / "bad.png")])


def test_evaluate_reports_unreadable_images_and_scores_the_rest(rated_folder, tmp_path, capsys):
    (rated_folder / "img_00.png").write_text("damaged")  # a test image
    labels = f"csv:{rated_folder / 'labels.csv'}"
    out = tmp_path / "eval.json"
    args = ["evaluate", "--model", "iqa_test_tiny", "--dataset", labels, "--bootstrap", "0", "--quiet"]
    assert main([*args, "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"skipped {rated_folder / 'img_00.png'}: not an image" in err
    result = json.loads(out.read_text())
    assert result["failed"] == 1 and result["n"] == 5 and len(result["predictions"]) == 5
    assert result["failures"][0]["image"].endswith("img_00.png")
    assert main([*args, "--strict"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "img_00.png" in lines[0] and lines[0].startswith("kdiqa evaluate: error: cannot read")


def test_bundled_onnx_matches_the_torch_default():
    """The shipped fp32 export gives the torch default's numbers; int8 stays within half again the largest
    difference its parity report measured on CLIVE test (4.7 MOS points, mean 1.5) and keeps each example photo
    above its distorted copy."""
    paths = sorted(str(p) for p in EXAMPLES.glob("*.jpg"))
    ref = np.array([r.score for r in score_paths(TorchBackend(kdiqa.load("default")), paths, progress=False)])
    fp32 = np.array([r.score for r in score_paths(OnnxScorer("default", threads=1), paths, progress=False)])
    int8 = np.array([r.score for r in score_paths(OnnxScorer("default", "int8", threads=1), paths, progress=False)])
    assert np.abs(fp32 - ref).max() < 1e-3
    assert np.abs(int8 - ref).max() < default_int8_max_diff()
    by_name = dict(zip((Path(p).stem for p in paths), int8, strict=True))
    assert all(
        by_name[c] > by_name[f"{c}_{d}"] for c, d in (("astronaut", "jpeg"), ("chelsea", "noise"), ("coffee", "blur"))
    )
    folder = Path(OnnxScorer("default").folder)
    assert folder.parent.name == resolve_name("default")
    assert sum(f.stat().st_size for f in folder.iterdir()) < 25e6
    assert {f.suffix for f in folder.iterdir()} <= {".onnx", ".json", ".md"}  # no pickles


def test_score_imports_no_scipy_and_no_dataset_code():
    code = textwrap.dedent(
        f"""
        import json, sys
        from kdiqa.cli import main
        rc = main(["score", {str(EXAMPLES)!r}, "--quiet"])
        unwanted = ("scipy", "kdiqa.data.datasets", "kdiqa.data.adapters", "kdiqa.data.pools", "kdiqa.metrics")
        print(json.dumps({{"rc": rc, "loaded": sorted(m for m in unwanted if m in sys.modules)}}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"rc": 0, "loaded": []}
    assert len(proc.stdout.strip().splitlines()) == 7  # one score line per example photo
