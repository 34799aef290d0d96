"""Validation check of a teacher *prediction ensemble* (the mean of several seeds' scores).

Weight averaging fails for seeds whose heads start from different random inits (teacher_clive.json);
averaging their predictions does not have that problem, at twice the teacher's cost. This compares
each checkpoint and their mean on the validation split the runs carved from CLIVE ``train``, in one
view mode. It never touches ``test``.

    python benchmarks/teacher_ensemble_val.py --runs runs/teacher_lite2_clive_ml runs/teacher_lite2_clive_ml_s1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from kdiqa.checkpoint import load_model
from kdiqa.config import from_dict
from kdiqa.data.datasets import get_dataset
from kdiqa.data.transforms import EvalTransform
from kdiqa.engine import TrainConfig
from kdiqa.evaluation import predict_paths
from kdiqa.metrics import evaluate_predictions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, help="training run folders (their best/ is used)")
    ap.add_argument("--checkpoint", default="best")
    ap.add_argument("--mode", default="center", choices=("full", "center", "crops"))
    ap.add_argument("--crop", type=int, default=384)
    ap.add_argument("--root", default="../shared/data/clive")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/teacher_ensemble_val.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    splits = set()
    for run in args.runs:
        data = from_dict(TrainConfig, json.loads((Path(run) / "train_config.json").read_text())).data
        splits.add((data.val_fraction, data.val_seed))
    if len(splits) != 1:
        raise SystemExit(f"the runs carve different validation splits {sorted(splits)}: nothing to compare")
    fraction, seed = splits.pop()
    val = get_dataset("clive", args.root).carve_val(fraction, seed=seed).subset("val")
    transform = EvalTransform(args.mode, args.crop, 5 if args.mode == "crops" else 1)
    mos = val.mos_array()

    def metrics(z: np.ndarray) -> dict:
        r = evaluate_predictions(np.asarray(val.denormalize(z)), mos, n_boot=0)
        return {k: r[k] for k in ("srcc", "plcc", "n")}

    preds, rows = [], {}
    for run in args.runs:
        model = load_model(Path(run) / args.checkpoint)
        preds.append(predict_paths(model, [r.path for r in val.rows], transform, batch_size=8))
        rows[run] = metrics(preds[-1])
    rows["ensemble (mean of the above)"] = metrics(np.mean(preds, axis=0))
    result = {"split": "val", "mode": args.mode, "crop": args.crop, "checkpoint": args.checkpoint, "results": rows}
    Path(args.out).write_text(json.dumps(result, indent=2))
    for name, r in rows.items():
        print(f"{name}: SRCC {r['srcc']:.4f}  PLCC {r['plcc']:.4f}  n {r['n']}")


if __name__ == "__main__":
    main()
