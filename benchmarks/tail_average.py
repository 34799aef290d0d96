"""Checkpoint choice without validation noise: the mean of a matching run's last snapshots.

A cosine schedule ends with small steps, so the snapshots of its last part lie close together and their
parameter mean (``kdiqa average``) is a model of its own, in the way of stochastic weight averaging
(Izmailov et al., UAI 2018), with the BatchNorm statistics averaged too rather than recomputed. That
mean needs no choice among snapshots, unlike the checkpoint best on the 105 validation images. For each
run with ``snapshots: true`` this writes the mean of the snapshots in the last ``--tail`` fraction of the
schedule to ``out_dir/tail`` (a checkpoint any ``student_init`` can name) and compares it with the
best-on-validation checkpoint and the last snapshot: validation SRCC against MOS, student–teacher SRCC on
validation, test SRCC and PLCC. Writes JSON and a Markdown table.

    python benchmarks/tail_average.py --runs runs/tiers/edge_native96_s0 runs/tiers/edge_native96_m3_s1 \\
        --out benchmarks/results/tail_average_edge.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from kdiqa.bench.results import write_result
from kdiqa.checkpoint import average_checkpoints, load_model
from kdiqa.config import from_dict
from kdiqa.distill.engine import DistillRunConfig
from kdiqa.engine import labelled_splits
from kdiqa.evaluation import predict_paths
from kdiqa.hub import load
from kdiqa.metrics import evaluate_predictions, srcc
from kdiqa.runs import read_history, snapshot_folder


def snapshots(run: Path) -> list[Path]:
    """The run's snapshot folders in training order (the history's order)."""
    folders = [snapshot_folder(run, rec["stage"], rec["epoch"]) for rec in read_history(run)]
    return [f for f in folders if f.is_dir()]


def tail(folders: list[Path], fraction: float) -> list[Path]:
    """The last ``fraction`` of the snapshots, at least two."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"--tail must be in (0, 1], got {fraction}")
    k = max(2, math.ceil(len(folders) * fraction - 1e-9))
    if len(folders) < k:
        raise ValueError(f"{len(folders)} snapshot(s): averaging needs at least two")
    return folders[-k:]


def compare(run: Path, fraction: float, device: str = "cpu", workers: int = 0) -> dict:
    """Best-on-validation, last snapshot and the tail mean of one run, each on val and test."""
    cfg = from_dict(DistillRunConfig, json.loads((run / "distill_config.json").read_text()))
    ds, _, val_ds = labelled_splits(cfg.labelled)
    test_ds = ds.subset("test")
    val_paths, test_paths = [r.path for r in val_ds.rows], [r.path for r in test_ds.rows]
    t_val = predict_paths(load(cfg.teacher).to(device), val_paths, workers=workers)
    val_mos, test_mos = val_ds.mos_array(), test_ds.mos_array()
    folders = snapshots(run)
    chosen = tail(folders, fraction)
    average_checkpoints(chosen, run / "tail")
    rows = {}
    for name, folder in (("best on val", run / "best"), ("last snapshot", folders[-1]), ("tail mean", run / "tail")):
        model = load_model(folder).to(device)
        val = predict_paths(model, val_paths, workers=workers)
        r = evaluate_predictions(test_ds.denormalize(predict_paths(model, test_paths, workers=workers)), test_mos, 0)
        rows[name] = {"folder": str(folder), "val_srcc": srcc(val, val_mos),
                      "srcc_teacher_val": srcc(val, t_val), "test_srcc": r["srcc"], "test_plcc": r["plcc"]}  # fmt: skip
    return {"run": str(run), "snapshots": len(folders), "averaged": [f.name for f in chosen], "rows": rows}


def markdown(result: dict) -> str:
    lines = ["# The tail mean of a matching run's snapshots against the checkpoint best on validation", "",
             f"Tail: the last {result['tail']:.0%} of each run's snapshots. CLIVE validation 105 images, test 230.", "",
             "| run | checkpoint | val SRCC | student–teacher SRCC (val) | test SRCC | test PLCC |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for c in result["runs"]:
        for name, r in c["rows"].items():
            label = f"{name} ({', '.join(c['averaged'])})" if name == "tail mean" else name
            lines.append(f"| {Path(c['run']).name} | {label} | {r['val_srcc']:.3f} | {r['srcc_teacher_val']:.3f} "
                         f"| {r['test_srcc']:.3f} | {r['test_plcc']:.3f} |")  # fmt: skip
    lines += ["", "| checkpoint | runs | mean val SRCC | mean test SRCC |", "|---|---|---|---|"]
    for name in ("best on val", "last snapshot", "tail mean"):
        val = [c["rows"][name]["val_srcc"] for c in result["runs"]]
        test = [c["rows"][name]["test_srcc"] for c in result["runs"]]
        lines.append(f"| {name} | {len(val)} | {np.mean(val):.3f} | {np.mean(test):.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, help="run folders with snapshots/")
    ap.add_argument("--tail", type=float, default=0.25, help="the fraction of the snapshots averaged (last ones)")
    ap.add_argument("--out", required=True, help="JSON; the .md is written beside it")
    ap.add_argument("--device", default="cpu", help="where the models run (cpu, cuda)")
    ap.add_argument("--workers", type=int, default=0, help="image-decoding processes")
    args = ap.parse_args(argv)
    t0 = time.time()
    result = {"tail": args.tail, "runs": [compare(Path(r), args.tail, args.device, args.workers) for r in args.runs]}
    result["seconds"] = round(time.time() - t0, 1)
    table_md = markdown(result)
    write_result(args.out, result, table_md)
    print(table_md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
