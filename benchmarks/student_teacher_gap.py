"""How closely each distilled student follows its teacher: on the crops it was distilled on, and on held-out images.

A student that tracks the teacher on its distillation crops but much less on images it never saw has memorised the
pool rather than learnt the teacher's judgement; the pool, not the method, then limits what distillation can add.
For every finished run under the given run folders (``STUDENT/METHOD/seedN``, as ``distill_clive.py`` lays them
out), this reports the Spearman correlation (SRCC) between the run's best checkpoint and the teacher

- on the pool crops of the run's config (the teacher cache of its soft stage, at most ``--max-crops`` of them,
  evenly spaced). The MOS-only control ``none`` never trained on them: its row is the reference; and
- on the validation images carved out of CLIVE ``train`` (each model with its own evaluation views),

and the checkpoint's validation SRCC against MOS, which must equal the run's recorded best (a check that the same
images and views were used). CLIVE ``test`` is not touched.

    python benchmarks/student_teacher_gap.py --runs runs/distill_clive --max-crops 1000 \\
        --out benchmarks/results/student_teacher_gap.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from kdiqa import load
from kdiqa.bench.results import write_result
from kdiqa.checkpoint import load_model
from kdiqa.config import from_dict
from kdiqa.data.transforms import EvalTransform
from kdiqa.distill.cache import teacher_fingerprint
from kdiqa.distill.data import pool_cache
from kdiqa.distill.engine import DistillRunConfig
from kdiqa.engine import labelled_splits
from kdiqa.evaluation import eval_transform_for, predict_paths
from kdiqa.metrics import srcc

METHODS = ("none", "response", "hints", "review")  # the table order of distill_clive.py
MEANS = ("srcc_teacher_pool", "srcc_teacher_val", "val_srcc")  # averaged over seeds in the summary


def find_runs(roots: list[str], students: list[str] | None = None) -> list[Path]:
    """Finished runs (those with a ``summary.json``) under ``ROOT/STUDENT/METHOD/seedN``, of ``students`` if given."""
    runs = sorted(p.parent for root in roots for p in Path(root).glob("*/*/seed*/summary.json"))
    return [r for r in runs if students is None or r.parent.parent.name in students]


def val_split(cfg: DistillRunConfig):
    """The labelled validation split the run selected its checkpoint on (carved as ``kdiqa distill`` does)."""
    return labelled_splits(cfg.labelled)[2]


def cached_crops(path: Path, max_crops: int) -> tuple[torch.Tensor, np.ndarray]:
    """Up to ``max_crops`` evenly spaced crops (uint8) of a teacher cache and the teacher's scores on them.

    Only the two tensors needed are read from the file (its feature maps can be gigabytes).
    """
    with safe_open(str(path), "pt") as f:
        scores = f.get_tensor("t_score").numpy()
        idx = np.unique(np.linspace(0, len(scores) - 1, min(len(scores), max_crops)).round().astype(int))
        images = f.get_slice("image")
        crops = torch.stack([images[int(i)] for i in idx])
    return crops, scores[idx].astype(np.float64)


@torch.no_grad()
def predict_crops(model, crops: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    model.eval()
    out = [model(c.float().div(255).contiguous(memory_format=torch.channels_last)) for c in crops.split(batch_size)]
    return torch.cat(out).double().numpy()


def measure(run: Path, teachers: dict, pools: dict, max_crops: int) -> dict:
    """The figures of one run (the teacher's predictions and pool crops are computed once and shared)."""
    cfg = from_dict(DistillRunConfig, json.loads((run / "distill_config.json").read_text()))
    summary = json.loads((run / "summary.json").read_text())
    val_ds = val_split(cfg)
    paths = [r.path for r in val_ds.rows] if val_ds is not None else []
    if len(paths) < 3:
        raise SystemExit(f"{run}: {len(paths)} validation images (labelled.val_fraction {cfg.labelled.val_fraction})")
    if not cfg.pool.sources:
        raise SystemExit(f"{run}: its config has no pool, so there are no distillation crops to compare on")
    if cfg.teacher not in teachers:
        teacher = load(cfg.teacher)
        teachers[cfg.teacher] = {"model": teacher, "fingerprint": teacher_fingerprint(teacher), "val": {}}
    t = teachers[cfg.teacher]
    key = tuple(paths)
    if key not in t["val"]:
        t["val"][key] = predict_paths(t["model"], paths, eval_transform_for(t["model"]))
    cache = pool_cache(cfg, t["model"], val_ds)
    if cache not in pools:
        pools[cache] = cached_crops(cache, max_crops)
    crops, t_pool = pools[cache]

    student = load_model(run / "best")
    eval_tf = EvalTransform(cfg.eval.mode, cfg.eval.crop, cfg.eval.n_crops, cfg.labelled.resize)
    s_val = predict_paths(student, paths, eval_tf, cfg.eval.batch_size)
    mos = val_ds.normalize(val_ds.mos_array())
    return {
        "student": summary["student"],
        "method": summary["method"],
        "seed": cfg.seed,
        "run": str(run),
        "teacher_fingerprint": t["fingerprint"],
        "pool_cache": cache.name,
        "pool_crops": len(t_pool),
        "srcc_teacher_pool": srcc(predict_crops(student, crops), t_pool),
        "srcc_teacher_val": srcc(s_val, t["val"][key]),
        "val_srcc": srcc(s_val, mos),
        "val_srcc_recorded": summary["best"]["srcc"],
        "teacher_val_srcc": srcc(t["val"][key], mos),
        "n_val": len(paths),
    }


def summarise(rows: list[dict]) -> list[dict]:
    """Means over seeds per student and method, in the order the rows first name the students."""
    students = list(dict.fromkeys(r["student"] for r in rows))
    out = []
    for student in students:
        for method in METHODS:
            cell = [r for r in rows if r["student"] == student and r["method"] == method]
            if not cell:
                continue
            mean = {k: float(np.mean([r[k] for r in cell])) for k in MEANS}
            out.append({"student": student, "method": method, "seeds": sorted(r["seed"] for r in cell), **mean})
    return out


def markdown(result: dict) -> str:
    lines = [
        "| student | method | seeds | SRCC with the teacher on the pool crops | on held-out val images | gap "
        "| val SRCC (MOS) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in result["summary"]:
        gap = s["srcc_teacher_pool"] - s["srcc_teacher_val"]
        lines.append(
            f"| {s['student']} | {s['method']} | {len(s['seeds'])} | {s['srcc_teacher_pool']:.3f} "
            f"| {s['srcc_teacher_val']:.3f} | {gap:+.3f} | {s['val_srcc']:.3f} |"
        )
    teacher = ", ".join(f"{v:.3f}" for v in sorted({round(r["teacher_val_srcc"], 4) for r in result["runs"]}))
    lines += [
        "",
        f"The teacher's own val SRCC: {teacher} (the bundled teacher, trained on all of CLIVE `train`, has seen "
        "these images; a teacher trained with a validation split, and the students, have not).",
        "",
        "Commands: " + "; ".join(f"`{c}`" for c in result["commands"]),
    ]
    return "\n".join(lines) + "\n"


def load_previous(out: Path, max_crops: int) -> dict:
    """The results already in ``out`` (measured with the same ``max_crops``), or an empty result."""
    if not out.is_file():
        return {"commands": [], "max_crops": max_crops, "wall_seconds": 0.0, "summary": [], "runs": []}
    previous = json.loads(out.read_text())
    if previous.get("max_crops") != max_crops:
        raise SystemExit(f"{out} was measured with --max-crops {previous.get('max_crops')}: use that, or another --out")
    return previous


def write(out: Path, result: dict) -> None:
    write_result(out, result, markdown(result))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, help="run folders as distill_clive.py writes them")
    ap.add_argument("--students", nargs="+", help="only these students' runs (default: all)")
    ap.add_argument("--out", default="benchmarks/results/student_teacher_gap.json")
    ap.add_argument("--max-crops", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = find_runs(args.runs, args.students)
    if not runs:
        raise SystemExit(f"no finished runs (STUDENT/METHOD/seedN/summary.json) under {' '.join(args.runs)}")
    out = Path(args.out)
    result = load_previous(out, args.max_crops)
    result["commands"].append(
        "python benchmarks/student_teacher_gap.py " + " ".join(sys.argv[1:] if argv is None else argv)
    )
    done = {r["run"]: r for r in result["runs"]}
    t0, teachers, pools = time.time() - result["wall_seconds"], {}, {}
    for i, run in enumerate(runs, 1):
        recorded = json.loads((run / "summary.json").read_text())["best"]["srcc"]
        if str(run) in done and done[str(run)]["val_srcc_recorded"] == recorded:
            print(f"[{i}/{len(runs)}] {run}: measured before (in {out})", flush=True)
            continue
        row = measure(run, teachers, pools, args.max_crops)
        done[str(run)] = row
        print(
            f"[{i}/{len(runs)}] {run}: with the teacher, pool {row['srcc_teacher_pool']:.3f}, "
            f"val {row['srcc_teacher_val']:.3f}",
            flush=True,
        )
        rows = sorted(done.values(), key=lambda r: (r["student"], METHODS.index(r["method"]), r["seed"], r["run"]))
        result.update(wall_seconds=round(time.time() - t0, 1), summary=summarise(rows), runs=rows)
        write(out, result)  # after every run: a killed job loses nothing, and a re-run skips what is done
    write(out, result)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
