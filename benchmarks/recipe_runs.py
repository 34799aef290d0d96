"""A recipe's spread over its matching runs, against the better of its MOS-only controls.

Fine-tune seeds from one matched checkpoint agree closely; matching runs on different view streams do not, so a
recipe's claim rests on the mean over matching runs. This reads the route tables that ``tier_results.py`` wrote
(no model is run) and, for each recipe, takes one route per matching run (each route's mean test SRCC over its
fine-tune seeds), then the mean ± std over the runs (ddof 1), the margin over the better control (the control
route with the higher mean test SRCC), the worst run's margin and how many runs beat that control. Writes JSON and
a Markdown table.

    python benchmarks/recipe_runs.py --results benchmarks/results/tiers_native96_edge.json \\
        benchmarks/results/tiers_native96_edge_m3.json benchmarks/results/tiers_rank_control.json \\
        --recipe "edge, best on val" edge_native96_rank_frozen,edge_native96_m3_rank_frozen \\
            edge_control,edge_control_rank_frozen \\
        --out benchmarks/results/recipe_runs_edge.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from kdiqa.bench.results import write_result


def route_table(files: list[Path]) -> dict[str, dict]:
    """Every route of the given result files by name; a name in two files is an error (which one is meant?)."""
    table, origin = {}, {}
    for f in files:
        for name, route in json.loads(Path(f).read_text()).get("routes", {}).items():
            if name in table:
                raise ValueError(f"route {name!r} is in both {origin[name]} and {f}: pass only one of them")
            table[name], origin[name] = {**route, "file": str(f)}, f
    return table


def lookup(table: dict[str, dict], name: str) -> dict:
    if name not in table:
        raise ValueError(f"route {name!r} is in none of the --results files")
    return table[name]


def recipe(table: dict[str, dict], name: str, routes: list[str], controls: list[str]) -> dict:
    """One recipe's runs (a route each), their mean ± std and margins over the better control."""
    runs = []
    for r in routes:
        route = lookup(table, r)
        runs.append({"route": r, "file": route["file"], "seeds": route["seeds"],
                     "test_srcc": route["test_srcc_mean"], "val_srcc": route["val_srcc_mean"]})  # fmt: skip
    ctrl = max(((c, lookup(table, c)["test_srcc_mean"]) for c in controls), key=lambda c: c[1])
    test = np.array([r["test_srcc"] for r in runs])
    return {
        "recipe": name,
        "runs": runs,
        "control": {"route": ctrl[0], "test_srcc": ctrl[1]},
        "test_srcc_mean": float(test.mean()),
        "test_srcc_std": float(test.std(ddof=1)) if len(test) > 1 else 0.0,
        "margin": float(test.mean() - ctrl[1]),
        "worst_margin": float(test.min() - ctrl[1]),
        "runs_above_control": int((test > ctrl[1]).sum()),
    }


def markdown(result: dict) -> str:
    lines = ["# Recipes over their matching runs (CLIVE test SRCC, mean over each run's fine-tune seeds)", "",
             "| recipe | runs | per run | mean ± std | better control | margin | worst run's margin | runs above |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["recipes"]:
        per_run = ", ".join(f"{run['test_srcc']:.3f}" for run in r["runs"])
        ctrl, n = r["control"], len(r["runs"])
        lines.append(
            f"| {r['recipe']} | {n} | {per_run} | {r['test_srcc_mean']:.3f} ± {r['test_srcc_std']:.3f} "
            f"| {ctrl['test_srcc']:.3f} (`{ctrl['route']}`) | {r['margin']:+.3f} | {r['worst_margin']:+.3f} "
            f"| {r['runs_above_control']}/{n} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", nargs="+", required=True, help="tier_results.py JSON files")
    ap.add_argument(
        "--recipe",
        nargs=3,
        action="append",
        required=True,
        metavar=("NAME", "ROUTES", "CONTROLS"),
        help="a name, its routes (one per matching run) and its control routes, comma-separated",
    )
    ap.add_argument("--out", required=True, help="JSON; the .md is written beside it")
    args = ap.parse_args(argv)
    table = route_table([Path(f) for f in args.results])
    result = {"recipes": [recipe(table, n, r.split(","), c.split(",")) for n, r, c in args.recipe]}
    table_md = markdown(result)
    print(write_result(args.out, result, table_md).with_suffix(".md"), table_md, sep="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
