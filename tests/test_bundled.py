"""The bundled reference teacher: loads offline, scores the examples sensibly, and (with the shared
data) keeps its accuracy on a slice of CLIVE test."""

from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

import kdiqa
from kdiqa.hub import list_pretrained

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
needs_weights = pytest.mark.skipif(
    "iqa_effnet_lite2.clive" not in list_pretrained(), reason="bundled teacher weights are not in this installation"
)


@needs_weights
def test_default_model_ranks_clean_above_distorted():
    model = kdiqa.load("default")
    assert model.cfg.score_range == (0.0, 100.0)
    pairs = [
        ("coffee.jpg", "coffee_blur.jpg"),
        ("chelsea.jpg", "chelsea_noise.jpg"),
        ("astronaut.jpg", "astronaut_jpeg.jpg"),
    ]
    for clean, bad in pairs:
        s_clean, s_bad = model.score(EXAMPLES / clean, mode="full"), model.score(EXAMPLES / bad, mode="full")
        assert 0 <= s_bad < s_clean <= 100, (clean, s_clean, s_bad)


@needs_weights
def test_teacher_accuracy_on_clive_test_slice():
    from kdiqa.data.transforms import EvalTransform
    from kdiqa.evaluation import evaluate_model

    ds = kdiqa.get_dataset("clive", shared_path("clive")).subset("test")
    ds.rows = ds.rows[::3]  # 77 images, full-image views: ~15 s on two CPU threads
    result = evaluate_model(kdiqa.load("default"), ds, EvalTransform("full"), n_boot=0, progress=False)
    assert result["n"] == 77
    assert result["srcc"] > 0.7 and result["plcc"] > 0.7
    assert np.isfinite(result["rmse"])
