"""Ablation of the function-matching recipe on validation (the edge student, equal views per arm).

Each arm changes one part of ``configs/experiments/function_matching/distill_ablation.yaml`` (6k fresh views,
mixup, no synthetic distortion, scores only): a fixed teacher cache of pool crops instead of fresh views
(the crops repeat, flipped, as the earlier distillation runs did), no mixup, synthetic distortions, and
score + feature hints on the same views. Reported per arm: the best validation SRCC against MOS, the
student–teacher SRCC on the validation images, and wall time. CLIVE ``test`` is not used.
Arms already run are resumed or read back, so the script can be re-run after a kill.

    python benchmarks/match_ablation.py --out benchmarks/results/match_ablation.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kdiqa.bench.results import write_result
from kdiqa.cli import main as kdiqa_main
from kdiqa.config import from_dict
from kdiqa.distill.engine import DistillRunConfig
from kdiqa.engine import labelled_splits
from kdiqa.evaluation import predict_paths
from kdiqa.hub import load
from kdiqa.metrics import srcc
from kdiqa.runs import read_history

CONFIG = "configs/experiments/function_matching/distill_ablation.yaml"
FIXED = "stages=[{stage: soft, data: pool, epochs: 2, lr: 2.0e-3, steps_per_epoch: 94}]"
ARMS = {
    "fresh views, mixup (base)": [],
    "fixed cache of pool crops": [FIXED, "cache.enabled=true"],
    "no mixup": ["matching.mix=0"],
    "synthetic distortions (p 0.5)": ["matching.distort=0.5"],
    "score + hints": ["method=hints"],
}


def views(record: dict, cfg: DistillRunConfig) -> int:
    """An epoch's views: recorded for a views stage; a pool stage's record counts steps, each a batch."""
    if "train_views" in record:
        return record["train_views"]
    return cfg.stages[record["stage"]].steps_per_epoch * cfg.labelled.batch_size


def run_arm(name: str, overrides: list[str], root: Path, threads: int) -> dict:
    out = root / name.split(" (")[0].replace(" ", "_").replace(",", "").replace("+", "and")
    sets = [*overrides, f"out_dir={out}", f"threads={threads}"]
    kdiqa_main(["distill", "--config", CONFIG, "--quiet", *[x for s in sets for x in ("--set", s)]])
    history = read_history(out)
    cfg = from_dict(DistillRunConfig, json.loads((out / "distill_config.json").read_text()))
    _, _, val_ds = labelled_splits(cfg.labelled)
    paths = [r.path for r in val_ds.rows]
    student_teacher = srcc(predict_paths(load(out / "best"), paths), predict_paths(load(cfg.teacher), paths))
    return {
        "arm": name,
        "overrides": overrides,
        "run": str(out),
        "views": sum(views(r, cfg) for r in history),
        "val_srcc": max(r["val_srcc"] for r in history),
        "srcc_teacher_val": student_teacher,
        "train_seconds": round(sum(r["train_seconds"] for r in history), 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/match_ablation.json")
    ap.add_argument("--runs", default="runs/match_ablation")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    rows = [run_arm(name, sets, Path(args.runs), args.threads) for name, sets in ARMS.items()]
    lines = [
        "# Function-matching ablation (validation, edge student)",
        "",
        "| arm | views | best val SRCC | student–teacher SRCC (val) | train s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        cells = f"{r['views']:,} | {r['val_srcc']:.3f} | {r['srcc_teacher_val']:.3f} | {r['train_seconds']:.0f}"
        lines.append(f"| {r['arm']} | {cells} |")
    out = Path(args.out)
    write_result(out, {"config": CONFIG, "arms": rows}, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
