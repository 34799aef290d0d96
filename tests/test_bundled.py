"""The bundled models (teacher, default, edge and mid tiers): load offline, score the examples sensibly,
follow the documented rule for the default, and (with the shared data) keep their accuracy on CLIVE test."""

import json
from pathlib import Path

import pytest
from conftest import shared_path

import kdiqa
from kdiqa.hub import list_pretrained, resolve_folder
from kdiqa.models.pretrained import ALIASES, resolve_name

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
# Each tier's shipped route (3 seeds; the bundle is its best seed on validation) and where its figures live; the
# controls are the same students trained on MOS without the teacher, with and without the same ranking fine-tune.
SHIPPED_ROUTES = {
    "edge": ("tiers_native96_edge.json", "edge_native96_rank_frozen"),
    "mid": ("tiers_native96.json", "mid_native96_rank_frozen"),
}
CONTROLS_FILE, CONTROL_ROUTES = "tiers_rank_control.json", ("{tier}_control", "{tier}_control_rank_frozen")
TIERS = ("default", "teacher", "edge", "mid")
needs_weights = pytest.mark.skipif(
    not {resolve_name(t) for t in TIERS} <= set(list_pretrained()),
    reason="bundled weights are not in this installation",
)
README_PAIRS = [
    ("astronaut.jpg", "astronaut_jpeg.jpg"),
    ("chelsea.jpg", "chelsea_noise.jpg"),
    ("coffee.jpg", "coffee_blur.jpg"),
]


def _figures(name: str) -> dict:
    config = json.loads((resolve_folder(name) / "config.json").read_text())
    return {"srcc": config["clive_test"]["srcc"], **config["speed"]}


def _routes(file: str) -> dict:
    return json.loads((RESULTS / file).read_text())["routes"]


def _distillation_gain(tier: str) -> float:
    """Test SRCC of the tier's shipped route over the better of its two MOS-only controls (3 seeds each)."""
    file, route = SHIPPED_ROUTES[tier]
    controls = _routes(CONTROLS_FILE)
    best_control = max(controls[c.format(tier=tier)]["test_srcc_mean"] for c in CONTROL_ROUTES)
    return _routes(file)[route]["test_srcc_mean"] - best_control


def _ranks_readme_examples(name: str) -> bool:
    model = kdiqa.load(name)
    return all(model.score(EXAMPLES / c) > model.score(EXAMPLES / d) + 1.0 for c, d in README_PAIRS)


@needs_weights
def test_default_is_the_documented_rule_applied_to_the_recorded_figures():
    # edge if it meets its targets, else mid if it meets its, else the most accurate bundled model at >= 20
    # images/s in torch; each time only a model that rates every README example above its distorted copy
    # (docs/models.md). A tier's targets: its accuracy, its speed, and +0.05 test SRCC from distillation over
    # the better of its MOS-only controls. Figures: CLIVE test SRCC and the speed run recorded in each config, and
    # the tiers' 3-seed comparisons with their controls (SHIPPED_ROUTES, CONTROLS_FILE in benchmarks/results/).
    figures = {name: _figures(name) for name in list_pretrained()}
    teacher = figures[ALIASES["teacher"]]["onnx_fp32_images_per_s"]
    edge, mid = figures[ALIASES["edge"]], figures[ALIASES["mid"]]
    if (
        edge["srcc"] >= 0.66
        and edge["onnx_fp32_images_per_s"] >= max(200, 10 * teacher)
        and _distillation_gain("edge") >= 0.05
        and _ranks_readme_examples(ALIASES["edge"])
    ):
        expected = ALIASES["edge"]
    elif (
        mid["srcc"] >= 0.75
        and mid["onnx_fp32_images_per_s"] >= 4 * teacher
        and _distillation_gain("mid") >= 0.05
        and _ranks_readme_examples(ALIASES["mid"])
    ):
        expected = ALIASES["mid"]
    else:
        fast = sorted(
            (n for n, f in figures.items() if f["torch_images_per_s"] >= 20), key=lambda n: -figures[n]["srcc"]
        )
        expected = next(n for n in fast if _ranks_readme_examples(n))
    assert ALIASES["default"] == expected
    assert (resolve_folder("default") / "LIVE_README.txt").is_file()
    assert edge["onnx_fp32_images_per_s"] >= max(200, 10 * teacher)  # the edge tier's speed budget (mid: docs)


@needs_weights
@pytest.mark.parametrize("tier", ["edge", "mid"])
def test_each_tier_ships_the_best_validation_seed_of_its_measured_route(tier):
    # The margin the default rule reads is that of the route the bundle comes from: the bundle's recorded
    # validation and test figures are those of the route's best seed on validation.
    config = json.loads((resolve_folder(tier) / "config.json").read_text())
    file, route = SHIPPED_ROUTES[tier]
    runs = _routes(file)[route]["runs"]
    assert len(runs) == 3
    best = max(runs, key=lambda r: r["val_srcc"])
    assert config["val_srcc"] == pytest.approx(best["val_srcc"], abs=1e-6)
    assert config["clive_test"]["srcc"] == pytest.approx(best["test_srcc"], abs=1e-4)


@needs_weights
@pytest.mark.parametrize(("clean", "distorted"), README_PAIRS)
@pytest.mark.parametrize("name", ["default", "edge", "mid"])
def test_rates_each_readme_example_above_its_distorted_copy(name, clean, distorted):
    # What a new user tries first (README): the shipped default and tiers must see every distortion, by a visible
    # margin.
    model = kdiqa.load(name)
    assert model.score(EXAMPLES / clean) > model.score(EXAMPLES / distorted) + 1.0


@needs_weights
@pytest.mark.parametrize("name", TIERS)
def test_tiers_rank_blur_and_jpeg_below_the_clean_photo(name):
    # Blur and JPEG are seen by every tier. Synthetic noise is not: trained on CLIVE's authentic distortions, the
    # teacher scores chelsea_noise above chelsea (docs/models.md); only the students fine-tuned with degradation
    # ranking are held to that pair (above).
    model = kdiqa.load(name)
    assert model.cfg.score_range == (0.0, 100.0)
    scores = {n: model.score(EXAMPLES / n, mode="full") for pair in README_PAIRS for n in pair}
    assert all(-5 <= s <= 105 for s in scores.values()), scores  # an unclamped regression head, near the scale
    assert scores["coffee.jpg"] > scores["coffee_blur.jpg"] and scores["astronaut.jpg"] > scores["astronaut_jpeg.jpg"]


@needs_weights
@pytest.mark.parametrize(("name", "srcc"), [("teacher", 0.7), ("default", 0.65), ("edge", 0.58), ("mid", 0.68)])
def test_accuracy_on_clive_test_slice(name, srcc):
    from kdiqa.data.transforms import EvalTransform
    from kdiqa.evaluation import evaluate_model

    ds = kdiqa.get_dataset("clive", shared_path("clive")).subset("test")
    ds.rows = ds.rows[::3]  # 77 images, full-image views: ~15 s on two CPU threads
    result = evaluate_model(kdiqa.load(name), ds, EvalTransform("full"), n_boot=0, progress=False)
    assert result["n"] == 77
    assert result["srcc"] > srcc and result["plcc"] > srcc
