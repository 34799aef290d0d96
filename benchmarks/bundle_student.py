"""Packages the best student of the CLIVE ablation as a bundled kdiqa model (the default).

The method is the one with the best mean *validation* SRCC over its seeds, and the run the seed with
the best validation SRCC; test figures are only reported, never used to choose.

    python benchmarks/bundle_student.py --student iqa_mobilenetv3_small_050 \\
        --out src/kdiqa/weights/iqa_mobilenetv3_small_050.clive
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from kdiqa.checkpoint import load_model, read_config, save_model
from kdiqa.paths import dataset_root

CARD = """# {name} — {title}

- Architecture: {arch} (timm) + MLP quality head; {params:.2f} M parameters, {gmacs:.2f} GMACs at 500×500.
- Method: {how} (`{config}`, method `{method}`, seed {seed}); chosen as the method
  of the ablation with the best mean validation SRCC
  over {n_seeds}, then its seed with the best validation SRCC (validation: the 105 images carved
  from CLIVE `train`). Never trained or tuned on CLIVE `test`.
- Data: {data}
- Initialisation: {init}
- Trained by: `{command}` (the ablation; this is run `{run}`).
- Output: MOS on CLIVE's scale (0–100, higher is better). Test-time view: the full image, after
  downscaling so that the shorter side is at most 500 px.
- CLIVE `test` (230 images): SRCC {srcc:.4f}, PLCC {plcc:.4f} (this run);
  method mean over seeds: SRCC {srcc_mean:.4f} ± {srcc_std:.4f}. Teacher: SRCC {t_srcc:.4f}.
  Source: `{results}`.

The training data's copyright notice (LIVE_README.txt) accompanies these weights. Cite
D. Ghadiyaram and A.C. Bovik, "Massive Online Crowdsourced Study of Subjective and Objective Picture
Quality," IEEE TIP 2016.
"""


HOW = {
    "none": "trained on MOS only, without the teacher (at the ablation's budget no distillation method "
    "beat it on validation)",
    "distilled": "`{method}` distillation from the reference teacher `iqa_effnet_lite2.clive`",
}
DATA = {
    "none": "CLIVE `train` MOS (595 images; 105 more held out for validation).",
    "distilled": "the unrated pool (pristine photos with synthetic distortions + CLIVE `train` images without\n"
    "  their MOS) labelled by the teacher, then CLIVE `train` MOS.",
}


def describe_init(distill_config: dict | None, config_file: str | None = None) -> str:
    """The card's line on where the student's weights started (a ``student_init`` checkpoint or not); the
    run's config file, when given, is named with configs/README.md, which gives the commands that make it."""
    cfg = distill_config or {}
    folder, pretrained = cfg.get("student_init"), cfg.get("student_pretrained", "none")
    if not folder:
        return "ImageNet weights." if pretrained not in (None, "none") else "random (no pre-training)."
    where = f" `{config_file}` names it; configs/README.md gives the commands that make it." if config_file else ""
    pretext = read_config(folder).get("pretext")
    if not pretext:
        return f"the checkpoint `{folder}`.{where}"
    sources = ", ".join(f"`{s['path']}`" for s in pretext["sources"])
    return (
        f"the self-supervised pretext checkpoint `{folder}` ({pretext['epochs']} epochs × "
        f"{pretext['samples_per_epoch']} crops of {pretext['crop']} px from {sources}, synthetically distorted; "
        f"it learns to name the distortion type and to rank two strengths of it; no human score is used).{where}"
    )


def choose(result: dict, student: str) -> tuple[dict, dict, list[int]]:
    """(summary row of the chosen method, the chosen run, the seeds compared) by validation SRCC.

    Methods are compared by their mean validation SRCC over the seeds that every method has run (in an
    unfinished grid, a mean over one seed is not weighed against a mean over three); the run is then the
    chosen method's seed with the best validation SRCC.
    """
    runs = [r for r in result["runs"] if r["student"] == student]
    if not runs:
        raise SystemExit(f"no runs of {student} in the ablation results")
    methods = sorted({r["method"] for r in runs})
    common = set.intersection(*({r["seed"] for r in runs if r["method"] == m} for m in methods))
    if not common:
        raise SystemExit(f"{student}: no seed has been run with every method, so the methods cannot be compared")
    best_method = max(
        methods, key=lambda m: np.mean([r["val_srcc"] for r in runs if r["method"] == m and r["seed"] in common])
    )
    run = max((r for r in runs if r["method"] == best_method), key=lambda r: r["val_srcc"])
    summary = next(s for s in result["summary"] if s["student"] == student and s["method"] == best_method)
    return summary, run, sorted(common)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", default="iqa_mobilenetv3_small_050")
    ap.add_argument("--results", default="benchmarks/results/distill_clive.json")
    ap.add_argument("--runs", default="runs/distill_clive")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-short", type=int, default=500)
    ap.add_argument("--live-readme", help="CLIVE's copyright notice (default: <data root>/clive/LIVE_README.txt)")
    ap.add_argument("--title", default="kdiqa's default model", help="the model card's heading after the name")
    args = ap.parse_args()
    result = json.loads(Path(args.results).read_text())
    summary, run, compared = choose(result, args.student)
    folder = Path(args.runs) / args.student / run["method"] / f"seed{run['seed']}" / "best"
    model = load_model(folder)
    model.cfg.eval_mode, model.cfg.eval_max_short = "full", args.max_short
    out = Path(args.out)
    kind = "none" if run["method"] == "none" else "distilled"
    extra = {
        "trained_on": "CLIVE train (LIVE In the Wild Challenge)"
        + ("" if kind == "none" else " + an unrated pool labelled by the teacher"),
        "method": run["method"],
        "seed": run["seed"],
        "teacher": None if kind == "none" else "iqa_effnet_lite2.clive",  # `none` trains without it
        "train_command": f"{result.get('command', 'python benchmarks/distill_clive.py')} (run {folder})",
        "distill_config": read_config(folder).get("distill_config"),
        "clive_test": {k: run[k] for k in ("srcc", "plcc", "krcc", "rmse", "n")},
        "val_srcc": run["val_srcc"],
    }
    save_model(model, out, extra)
    shutil.copy(args.live_readme or Path(dataset_root("clive")) / "LIVE_README.txt", out / "LIVE_README.txt")
    (out / "README.md").write_text(
        CARD.format(
            name=out.name,
            title=args.title,
            arch=model.cfg.arch
            + (f" cut after its first {model.cfg.num_stages} feature stages" if model.cfg.num_stages else ""),
            params=run["params"] / 1e6,
            gmacs=run["macs"] / 1e9,
            method=run["method"],
            config=run.get("config", "configs/distill/"),
            results=args.results,
            how=HOW[kind].format(method=run["method"]),
            data=DATA[kind],
            init=describe_init(extra["distill_config"], run.get("config")),
            seed=run["seed"],
            n_seeds=f"seed{'s' * (len(compared) > 1)} {', '.join(map(str, compared))} (those every method has run)",
            command=result.get("command", "python benchmarks/distill_clive.py"),
            run=folder,
            srcc=run["srcc"],
            plcc=run["plcc"],
            srcc_mean=summary["srcc_mean"],
            srcc_std=summary["srcc_std"],
            t_srcc=result["teacher"]["srcc"],
        )
    )
    print(json.dumps({"bundled": str(out), "method": run["method"], "seed": run["seed"], "test_srcc": run["srcc"]}))


if __name__ == "__main__":
    main()
