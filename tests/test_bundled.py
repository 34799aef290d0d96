"""The bundled models (reference teacher, default student): load offline, score the examples
sensibly, and (with the shared data) keep their accuracy on CLIVE test."""

from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

import kdiqa
from kdiqa.hub import list_pretrained, resolve_folder

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
STUDENT = "iqa_mobilenetv3_small_050.clive"
CUT_LITE0 = "iqa_effnet_lite0_s4.clive"
needs_weights = pytest.mark.skipif(
    not {"iqa_effnet_lite2.clive", STUDENT} <= set(list_pretrained()),
    reason="bundled weights are not in this installation",
)


def _cut_lite0(*values):
    """A parameter set for the cut-Lite0 bundle, skipped where its weights are not installed."""
    missing = CUT_LITE0 not in list_pretrained()
    return pytest.param(*values, marks=pytest.mark.skipif(missing, reason=f"{CUT_LITE0} is not in this installation"))


@needs_weights
def test_default_model_is_the_small_student():
    model = kdiqa.load("default")
    assert model.name == "iqa_mobilenetv3_small_050" and model.num_params() < 1.5e6
    assert kdiqa.load("teacher").name == "iqa_effnet_lite2"
    assert (resolve_folder("default") / "LIVE_README.txt").is_file()


@needs_weights
@pytest.mark.parametrize("name", ["teacher", "default", _cut_lite0(CUT_LITE0)])
def test_bundled_models_rank_clean_above_distorted(name):
    # Every bundled model ranks blur and JPEG below the clean photo. All misrank the synthetic-noise pair, which is
    # out of domain for models trained on CLIVE's authentic distortions (clean vs noisy: the default 70.1 vs 72.5,
    # the teacher 81 vs 90, the cut Lite0 65.3 vs 71.2). The default's JPEG margin is narrow: 67.9 vs 66.8.
    model = kdiqa.load(name)
    assert model.cfg.score_range == (0.0, 100.0)
    pairs = [
        ("coffee.jpg", "coffee_blur.jpg"),
        ("chelsea.jpg", "chelsea_noise.jpg"),
        ("astronaut.jpg", "astronaut_jpeg.jpg"),
    ]
    scores = [(model.score(EXAMPLES / a, mode="full"), model.score(EXAMPLES / b, mode="full")) for a, b in pairs]
    # The head is an unclamped regression: a cut Lite0 can score the sharp coffee photo above 100 (this one: 95.0).
    hi = 105 if name == CUT_LITE0 else 100
    assert all(0 <= s <= hi for pair in scores for s in pair), scores
    blur, _noise, jpeg = scores
    assert blur[0] > blur[1] and jpeg[0] > jpeg[1], scores


@needs_weights
@pytest.mark.parametrize(("name", "srcc"), [("teacher", 0.7), ("default", 0.5), _cut_lite0(CUT_LITE0, 0.65)])
def test_accuracy_on_clive_test_slice(name, srcc):
    from kdiqa.data.transforms import EvalTransform
    from kdiqa.evaluation import evaluate_model

    ds = kdiqa.get_dataset("clive", shared_path("clive")).subset("test")
    ds.rows = ds.rows[::3]  # 77 images, full-image views: ~15 s on two CPU threads
    result = evaluate_model(kdiqa.load(name), ds, EvalTransform("full"), n_boot=0, progress=False)
    assert result["n"] == 77
    assert result["srcc"] > srcc and result["plcc"] > srcc
    assert np.isfinite(result["rmse"])
