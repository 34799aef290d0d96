"""Packages one training run's checkpoint as a bundled model (``src/kdiqa/weights/<arch>.<tag>``).

Copies the weights with the bundles' test-time view (the full image, shorter side at most 500 px),
records the run's recipe, its validation SRCC and its CLIVE ``test`` figures (measured here, reported
only: the checkpoint was chosen on validation), and adds CLIVE's copyright notice. The model card
(README.md in the folder) is written by hand from the measured figures.

    python benchmarks/bundle_run.py --run runs/function_matching/edge_mos_s0/best \\
        --name iqa_mobilenetv3_small_050.clive_fm --command "kdiqa distill --config ..."
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from kdiqa import get_dataset
from kdiqa.checkpoint import load_model, read_config, save_model
from kdiqa.data.transforms import EvalTransform
from kdiqa.evaluation import evaluate_model
from kdiqa.paths import dataset_root
from kdiqa.runs import read_history


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="the checkpoint folder (a run's best/)")
    ap.add_argument("--name", required=True, help="<architecture>.<tag>; the folder under src/kdiqa/weights")
    ap.add_argument("--command", required=True, help="the commands that trained it (recorded)")
    ap.add_argument("--trained-on", default="CLIVE train (LIVE In the Wild Challenge)")
    ap.add_argument("--max-short", type=int, default=500)
    ap.add_argument("--weights-dir", default="src/kdiqa/weights")
    args = ap.parse_args()
    run = Path(args.run)
    model = load_model(run)
    model.cfg.eval_mode, model.cfg.eval_max_short = "full", args.max_short
    test = get_dataset("clive", dataset_root("clive")).subset("test")
    result = evaluate_model(model, test, EvalTransform("full", max_short=args.max_short), n_boot=0, progress=False)
    history = read_history(run.parent)
    distill_config = read_config(run).get("distill_config")
    extra = {
        "trained_on": args.trained_on,
        "method": (distill_config or {}).get("method"),
        "train_command": args.command,
        "distill_config": distill_config,
        "clive_test": {k: result[k] for k in ("srcc", "plcc", "krcc", "rmse", "n")},
        "val_srcc": max(r["val_srcc"] for r in history if "val_srcc" in r),
    }
    out = Path(args.weights_dir) / args.name
    save_model(model, out, extra)
    shutil.copy(Path(dataset_root("clive")) / "LIVE_README.txt", out / "LIVE_README.txt")
    print(json.dumps({"bundled": str(out), **extra["clive_test"], "val_srcc": extra["val_srcc"]}, indent=2))


if __name__ == "__main__":
    main()
