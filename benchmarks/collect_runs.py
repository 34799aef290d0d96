"""Collects the validation record of finished ``kdiqa distill`` runs into one JSON and a Markdown table.

For runs compared on validation only (no ``test`` figures): each run's method, seed, steps, wall
time, best validation SRCC (and where), and its validation SRCC after every stage.

    python benchmarks/collect_runs.py runs/distill_clive/*/*/seed0 \\
        --out runs/distill_clive_val.json --note "what the runs compare"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kdiqa.bench.results import write_result


def collect(folder: Path) -> dict:
    cfg = json.loads((folder / "distill_config.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    history = json.loads((folder / "last" / "train_state.json").read_text())["history"]
    end_of_stage = {}
    for rec in history:  # the last epoch of each stage wins
        end_of_stage[rec["stage"]] = rec["val_srcc"]
    return {
        "run": str(folder),
        "student": cfg["student"],
        "method": cfg["method"],
        "seed": cfg["seed"],
        "steps": summary["total_steps"],
        "wall_seconds": summary["wall_seconds"],
        "best_val_srcc": summary["best"]["srcc"],
        "best_at": {"stage": summary["best"]["stage"], "epoch": summary["best"]["epoch"]},
        "val_srcc_end_of_stage": [end_of_stage[k] for k in sorted(end_of_stage)],
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| run | method | seed | steps | best val SRCC (stage, epoch) | val SRCC at the end of each stage |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ends = " / ".join(f"{v:.3f}" for v in r["val_srcc_end_of_stage"])
        at = f"({r['best_at']['stage']}, {r['best_at']['epoch']})"
        lines.append(
            f"| `{r['run']}` | {r['method']} | {r['seed']} | {r['steps']} | {r['best_val_srcc']:.3f} {at} | {ends} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="distill run folders (with summary.json)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    missing = [r for r in args.runs if not (Path(r) / "summary.json").is_file()]
    if missing:
        raise SystemExit(f"unfinished runs (no summary.json): {', '.join(missing)}")
    rows = sorted((collect(Path(r)) for r in args.runs), key=lambda r: (r["student"], r["method"], r["seed"]))
    out = Path(args.out)
    write_result(out, {"note": args.note, "split": "val", "runs": rows}, markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
