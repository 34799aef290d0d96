"""Accuracy against views seen, for function-matching runs kept with ``snapshots: true``.

For every snapshot of each run (``out_dir/snapshots/s<stage>e<epoch>``), in training order: the views seen
so far (the records' ``train_views``), the wall time so far (``train_seconds``), the validation SRCC against
MOS (from the run's history), the SRCC between student and teacher on the validation images, and the SRCC
and PLCC on the labelled set's ``test`` split. Checkpoints are chosen on validation; the test column is
the curve the runs are reported with, never used to choose. Writes JSON, a Markdown table and a plot.

    python benchmarks/match_curve.py --runs runs/function_matching/edge_response_s0 \\
        --out benchmarks/results/match_curve.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from kdiqa.bench.results import write_result
from kdiqa.checkpoint import load_model
from kdiqa.config import from_dict
from kdiqa.distill.engine import DistillRunConfig
from kdiqa.engine import labelled_splits
from kdiqa.evaluation import predict_paths
from kdiqa.hub import load
from kdiqa.metrics import evaluate_predictions, srcc
from kdiqa.runs import read_history, snapshot_folder


def snapshot_points(run: Path) -> list[dict]:
    """One point per snapshot: its folder, the cumulative views and seconds, and the recorded val SRCC."""
    history = read_history(run)
    points, views, seconds = [], 0, 0.0
    for rec in history:
        views += rec.get("train_views", 0)
        seconds += rec.get("train_seconds", 0.0)
        folder = snapshot_folder(run, rec["stage"], rec["epoch"])
        if folder.is_dir():
            points.append({"snapshot": str(folder), "views": views, "train_seconds": round(seconds, 1),
                           "val_srcc": rec.get("val_srcc")})  # fmt: skip
    return points


def curve(run: Path, n_boot: int = 0, device: str = "cpu", workers: int = 0) -> dict:
    """The run's points, each with its student–teacher SRCC on validation and its test SRCC/PLCC."""
    cfg = from_dict(DistillRunConfig, json.loads((run / "distill_config.json").read_text()))
    ds, _, val_ds = labelled_splits(cfg.labelled)
    test_ds = ds.subset("test")
    val_paths, test_paths = [r.path for r in val_ds.rows], [r.path for r in test_ds.rows]
    teacher = load(cfg.teacher).to(device)
    t_val = predict_paths(teacher, val_paths, workers=workers)
    points = snapshot_points(run)
    student_name = cfg.student  # with a student_init checkpoint, the snapshots' own name
    for p in points:
        student = load_model(p["snapshot"]).to(device)
        student_name = student.name
        p["srcc_teacher_val"] = srcc(predict_paths(student, val_paths, workers=workers), t_val)
        test = predict_paths(student, test_paths, workers=workers)
        r = evaluate_predictions(test_ds.denormalize(test), test_ds.mos_array(), n_boot)
        p["test_srcc"], p["test_plcc"] = r["srcc"], r["plcc"]
    return {"run": str(run), "method": cfg.method, "student": student_name, "test_images": len(test_paths),
            "val_images": len(val_paths), "points": points}  # fmt: skip


def markdown(result: dict) -> str:
    lines = ["# Accuracy against views seen (function matching)", ""]
    for c in result["curves"]:
        lines += [f"`{c['run']}` ({c['student']}, {c['method']}; CLIVE test {c['test_images']} images, "
                  f"validation {c['val_images']})", "",
                  "| views | train s | val SRCC | student–teacher SRCC (val) | test SRCC | test PLCC |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for p in c["points"]:
            lines.append(f"| {p['views']:,} | {p['train_seconds']:.0f} | {p['val_srcc']:.3f} "
                         f"| {p['srcc_teacher_val']:.3f} | {p['test_srcc']:.3f} | {p['test_plcc']:.3f} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for c in result["curves"]:
        views = np.array([p["views"] for p in c["points"]]) / 1000
        ax.plot(views, [p["test_srcc"] for p in c["points"]], marker="o", label=f"{Path(c['run']).name} test")
        ax.plot(views, [p["srcc_teacher_val"] for p in c["points"]], ls="--", label=f"{Path(c['run']).name} vs teacher")
    ax.set_xlabel("views seen (thousands)")
    ax.set_ylabel("SRCC")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, help="run folders with snapshots/")
    ap.add_argument("--out", required=True, help="JSON; the .md and .png are written beside it")
    ap.add_argument("--bootstrap", type=int, default=0, help="bootstrap resamples for the test CIs")
    ap.add_argument("--device", default="cpu", help="where the models run (cpu, cuda)")
    ap.add_argument("--workers", type=int, default=0, help="image-decoding processes")
    args = ap.parse_args(argv)
    t0 = time.time()
    result = {"curves": [curve(Path(r), args.bootstrap, args.device, args.workers) for r in args.runs]}
    result["seconds"] = round(time.time() - t0, 1)
    out = Path(args.out)
    write_result(out, result, markdown(result))
    plot(result, out.with_suffix(".png"))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
