"""benchmarks/recipe_runs.py: a recipe's mean over matching runs and its margins, from tier_results tables."""

import json

import pytest
from benchscripts import load_script

recipe_runs = load_script("recipe_runs")


def _route(test_srcc: float, val_srcc: float = 0.8, seeds: int = 3) -> dict:
    return {"seeds": seeds, "test_srcc_mean": test_srcc, "val_srcc_mean": val_srcc, "runs": []}


@pytest.fixture
def tables(tmp_path):
    a = tmp_path / "a.json"
    a.write_text(json.dumps({"routes": {"r1": _route(0.75), "r2": _route(0.70), "ctrl_a": _route(0.66)}}))
    b = tmp_path / "b.json"
    b.write_text(json.dumps({"routes": {"r3": _route(0.73), "ctrl_b": _route(0.68)}}))
    return a, b


def test_recipe_mean_std_and_margins_over_the_better_control(tables, tmp_path):
    out = tmp_path / "out" / "recipe.json"
    argv = ["--results", *map(str, tables), "--recipe", "edge", "r1,r2,r3", "ctrl_a,ctrl_b", "--out", str(out)]
    assert recipe_runs.main(argv) == 0
    (r,) = json.loads(out.read_text())["recipes"]
    assert [run["route"] for run in r["runs"]] == ["r1", "r2", "r3"]
    assert r["runs"][2]["file"] == str(tables[1])
    assert r["control"] == {"route": "ctrl_b", "test_srcc": 0.68}
    assert r["test_srcc_mean"] == pytest.approx(0.7266667, abs=1e-6)
    assert r["test_srcc_std"] == pytest.approx(0.0251661, abs=1e-6)  # ddof 1
    assert r["margin"] == pytest.approx(0.0466667, abs=1e-6)
    assert r["worst_margin"] == pytest.approx(0.02, abs=1e-9)
    assert r["runs_above_control"] == 3
    md = out.with_suffix(".md").read_text()
    assert "| edge | 3 | 0.750, 0.700, 0.730 | 0.727 ± 0.025 | 0.680 (`ctrl_b`) | +0.047 | +0.020 | 3/3 |" in md


def test_one_run_has_no_spread_and_runs_below_the_control_count(tables):
    table = recipe_runs.route_table(list(tables))
    r = recipe_runs.recipe(table, "one", ["r2"], ["ctrl_b"])
    assert r["test_srcc_std"] == 0.0
    r = recipe_runs.recipe(table, "low", ["r1", "r2"], ["ctrl_a", "ctrl_b"])
    assert r["control"]["route"] == "ctrl_b" and r["runs_above_control"] == 2
    r = recipe_runs.recipe(table, "low", ["r2", "ctrl_a"], ["ctrl_b"])
    assert r["runs_above_control"] == 1 and r["worst_margin"] == pytest.approx(-0.02)


def test_a_route_in_two_files_or_in_none_is_an_error(tables, tmp_path):
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps({"routes": {"r1": _route(0.5)}}))
    with pytest.raises(ValueError, match=r"route 'r1' is in both .*a\.json and .*dup\.json"):
        recipe_runs.route_table([tables[0], dup])
    table = recipe_runs.route_table(list(tables))
    with pytest.raises(ValueError, match="route 'nope' is in none of the --results files"):
        recipe_runs.recipe(table, "x", ["r1"], ["nope"])
