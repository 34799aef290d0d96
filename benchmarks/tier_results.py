"""The tiers' claim, measured: each function-matched student after its MOS stage against the same student's
MOS-only control (the same MOS stages from the student's own starting weights), over seeds.

For every run folder (``<runs>/<route>_s<seed>``): its best checkpoint (chosen on validation, the 105 images
carved from CLIVE ``train``) is scored on CLIVE ``test``, and on the README's example photos: how far each
clean photo scores above its distorted copy (JPEG, noise, blur; the default model must keep every margin above 1
point). Writes JSON and a Markdown table with mean ± std.

    python benchmarks/tier_results.py --routes edge_mos edge_control mid_mos mid_control \\
        --out benchmarks/results/tiers.json
    python benchmarks/tier_results.py --runs runs/tiers --routes mid_mos mid_control edge_mos edge_control \\
        --out benchmarks/results/tiers_resolution.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from kdiqa import get_dataset
from kdiqa.bench.results import write_result
from kdiqa.data.transforms import EvalTransform
from kdiqa.evaluation import evaluate_model
from kdiqa.hub import load
from kdiqa.paths import dataset_root
from kdiqa.runs import read_history


def start_weights(pretrained: str) -> str:
    """How a run without ``student_init`` started: ``"random weights"`` or ``"<pretrained> weights"``."""
    return "random weights" if pretrained == "none" else f"{pretrained} weights"


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
README_PAIRS = {"jpeg": "astronaut", "noise": "chelsea", "blur": "coffee"}  # distortion → the README's photo


def readme_margins(model) -> dict:
    """Score of each README example minus that of its distorted copy (``<photo>_<distortion>.jpg``)."""
    return {
        kind: model.score(EXAMPLES / f"{photo}.jpg") - model.score(EXAMPLES / f"{photo}_{kind}.jpg")
        for kind, photo in README_PAIRS.items()
    }


def run_row(folder: Path, test) -> dict:
    history = read_history(folder)
    config = json.loads((folder / "distill_config.json").read_text())
    model = load(folder / "best")
    r = evaluate_model(model, test, EvalTransform("full", max_short=500), n_boot=0, progress=False)
    return {
        "run": str(folder),
        "seed": config["seed"],
        "student_init": config["student_init"] or start_weights(config.get("student_pretrained", "none")),
        "val_srcc": max(h["val_srcc"] for h in history),
        "test_srcc": r["srcc"],
        "test_plcc": r["plcc"],
        "readme_margins": readme_margins(model),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--routes", nargs="+", required=True, help="run-name prefixes; each has <prefix>_s<seed> folders")
    ap.add_argument("--runs", default="runs/function_matching")
    ap.add_argument("--out", default="benchmarks/results/tiers.json")
    ap.add_argument("--title", default="Tiers: function matching + MOS against the MOS-only control (CLIVE test)")
    args = ap.parse_args()
    test = get_dataset("clive", dataset_root("clive")).subset("test")
    routes = {}
    for route in args.routes:
        folders = sorted(p for p in Path(args.runs).glob(f"{route}_s[0-9]*") if (p / "best").is_dir())
        rows = [run_row(f, test) for f in folders]
        routes[route] = {"runs": rows, "seeds": len(rows)}
        for k in ("val_srcc", "test_srcc", "test_plcc"):
            values = [r[k] for r in rows]
            routes[route][f"{k}_mean"] = float(np.mean(values))
            routes[route][f"{k}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    lines = [
        "| route | seeds | val SRCC | test SRCC | test PLCC | README margins (jpeg / noise / blur) | starts from |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in routes.items():
        cells = " | ".join(
            f"{r[k + '_mean']:.3f} ± {r[k + '_std']:.3f}" for k in ("val_srcc", "test_srcc", "test_plcc")
        )
        inits = dict.fromkeys(f"`{row['student_init']}`" for row in r["runs"])
        margins = " / ".join(f"{np.mean([row['readme_margins'][k] for row in r['runs']]):+.1f}" for k in README_PAIRS)
        lines.append(f"| {name} | {r['seeds']} | {cells} | {margins} | {', '.join(inits)} |")
    out = Path(args.out)
    write_result(out, {"test_images": len(test), "routes": routes}, f"# {args.title}\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
