"""The distillation ablation on CLIVE: students × methods × seeds, evaluated on CLIVE ``test``.

Every run trains one student with one method from its student's config (``--config``; the same
stages and steps for every method of a student; ``none`` trains on MOS only for as many steps),
keeps the checkpoint with the best SRCC on the validation split carved from CLIVE ``train``, and only that checkpoint is
evaluated on ``test`` (full image). Writes ``benchmarks/results/distill_clive.json`` (teacher, one
row per run, means ± std per student × method), a Markdown table and a bar chart. Finished runs are
skipped, so an interrupted ablation resumes.

    python benchmarks/distill_clive.py      # the reported grid and recipes (README_CONFIGS; hours on a 2-core CPU)
    python benchmarks/distill_clive.py --quick              # a few steps per stage, one seed: a check
    python benchmarks/distill_clive.py --config configs/distill/clive_lite0.yaml \\
        iqa_mobilenetv3_small_050=configs/distill/clive_mobilenetv3.yaml  # FILE for every student, STUDENT=FILE for one
    python benchmarks/distill_clive.py --include a.json b.json --collect-only  # one table from grids run elsewhere
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from kdiqa import create_model, load
from kdiqa.bench.results import write_result
from kdiqa.config import load_config
from kdiqa.data.datasets import get_dataset
from kdiqa.data.transforms import EvalTransform
from kdiqa.distill.cache import teacher_fingerprint
from kdiqa.distill.engine import DistillRunConfig, distill
from kdiqa.evaluation import evaluate_model
from kdiqa.models.weights import OFFLINE_PACKAGES
from kdiqa.profiling import count_macs, measure_latency

METHODS = ("none", "response", "hints", "review")
# The reported table's recipe per student (docs/results.md). The MobileNetV3 student starts from the pretext
# checkpoint that its config names (``student_init``): make it first, as configs/README.md says.
README_CONFIGS = {
    "iqa_mobilenetv3_small_050": "configs/distill/clive_mobilenetv3.yaml",
    "iqa_effnet_lite0_s4": "configs/distill/clive_lite0_s4.yaml",
    "iqa_effnet_lite0": "configs/distill/clive_lite0.yaml",
}
STUDENTS = tuple(README_CONFIGS)


def parse_configs(items: list[str]) -> dict[str | None, str]:
    """``FILE`` (every student) and ``STUDENT=FILE`` (that student) → {student or None: file}.

    Example:
        >>> parse_configs(["a.yaml", "iqa_effnet_lite0=b.yaml"])
        {None: 'a.yaml', 'iqa_effnet_lite0': 'b.yaml'}
    """
    configs: dict[str | None, str] = {}
    for item in items:
        student, _, path = item.rpartition("=")
        key = student or None
        if key in configs:
            raise SystemExit(f"--config: two files for {key or 'every student'} ({configs[key]}, {path})")
        configs[key] = path
    return configs


def config_for(args, student: str) -> str:
    if student in args.configs:
        return args.configs[student]
    if None not in args.configs:
        raise SystemExit(f"--config: no file for {student} (give FILE or {student}=FILE)")
    return args.configs[None]


def run_config(args, student: str, method: str, seed: int) -> DistillRunConfig:
    """The run's config: the student's file + this cell's student/method/seed (+ the quick budget)."""
    out = Path(args.runs) / student / method / f"seed{seed}"
    overrides = [
        f"student={student}",
        f"method={method}",
        f"seed={seed}",
        f"out_dir={out}",
        f"student_pretrained={pretrained_for(student)}",
        f"threads={args.threads}",
    ]
    cfg = load_config(DistillRunConfig, config_for(args, student), overrides)
    if args.quick:
        for st in cfg.stages:
            st.epochs, st.steps_per_epoch = 1, 3
    return cfg  # `none` trains on labelled MOS in every stage, for the same steps (the distill engine)


def pretrained_for(student: str) -> str:
    """``imagenet`` where kdiqa has offline ImageNet weights for the student's backbone (the Lite family, cut or
    whole), else ``none``: every method of a student starts from the same weights, whatever its config says.

    Example:
        >>> pretrained_for("iqa_effnet_lite0_s4"), pretrained_for("iqa_mobilenetv3_small_050")
        ('imagenet', 'none')
    """
    return "imagenet" if create_model(student).cfg.arch in OFFLINE_PACKAGES else "none"


def cost(model, size: int, threads: int) -> dict:
    """Parameters, MACs and median batch-1 CPU latency at ``size``×``size``."""
    torch.set_num_threads(threads)
    x = torch.rand(1, 3, size, size).contiguous(memory_format=torch.channels_last)
    model = model.eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        lat = measure_latency(lambda: model(x), warmup=3, iters=10)
    return {"params": model.num_params(), "macs": count_macs(model, size), "latency_ms_p50": lat["p50_ms"]}


def test_metrics(model, test_ds, n_boot: int) -> dict:
    r = evaluate_model(model, test_ds, EvalTransform("full"), batch_size=8, n_boot=n_boot, progress=False)
    return {k: r[k] for k in ("srcc", "plcc", "krcc", "rmse", "n", "srcc_ci95", "plcc_ci95")}


def summarise(runs: list[dict], teacher: dict) -> list[dict]:
    rows = []
    for student in dict.fromkeys(r["student"] for r in runs):
        for method in METHODS:
            cell = [r for r in runs if r["student"] == student and r["method"] == method]
            if not cell:
                continue
            s, p = np.array([r["srcc"] for r in cell]), np.array([r["plcc"] for r in cell])
            rows.append(
                {
                    "student": student,
                    "method": method,
                    "seeds": len(cell),
                    "srcc_mean": float(s.mean()),
                    "srcc_std": float(s.std(ddof=1)) if len(cell) > 1 else 0.0,
                    "plcc_mean": float(p.mean()),
                    "plcc_std": float(p.std(ddof=1)) if len(cell) > 1 else 0.0,
                    "srcc_vs_teacher": float(s.mean() / teacher["srcc"]),
                    "params": cell[0]["params"],
                    "macs": cell[0]["macs"],
                    "latency_ms_p50": float(np.median([r["latency_ms_p50"] for r in cell])),
                }
            )
    return rows


def _mean_sd(mean: float, sd: float, n: int) -> str:
    return f"{mean:.3f} ± {sd:.3f}" if n > 1 else f"{mean:.3f}"


def markdown(result: dict) -> str:
    t = result["teacher"]
    lines = [
        "| model | method | seeds | SRCC | PLCC | × teacher SRCC | params | GMACs @500² | CPU ms @500² |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {t['model']} (teacher) | – | 1 | {t['srcc']:.3f} | {t['plcc']:.3f} | 1.00 | {t['params'] / 1e6:.2f} M "
        f"| {t['macs'] / 1e9:.2f} | {t['latency_ms_p50']:.0f} |",
    ]
    for r in result["summary"]:
        srcc, plcc = (
            _mean_sd(r["srcc_mean"], r["srcc_std"], r["seeds"]),
            _mean_sd(r["plcc_mean"], r["plcc_std"], r["seeds"]),
        )
        lines.append(
            f"| {r['student']} | {r['method']} | {r['seeds']} | {srcc} | {plcc} | {r['srcc_vs_teacher']:.2f} "
            f"| {r['params'] / 1e6:.2f} M | {r['macs'] / 1e9:.2f} | {r['latency_ms_p50']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def bar_chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    students = list(dict.fromkeys(r["student"] for r in result["summary"]))
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(METHODS)
    for k, method in enumerate(METHODS):
        by_student = {r["student"]: r for r in result["summary"] if r["method"] == method}
        cells = [by_student.get(s) for s in students]
        xs = [i + (k - 1.5) * width for i, c in enumerate(cells) if c]
        ax.bar(xs, [c["srcc_mean"] for c in cells if c], width, yerr=[c["srcc_std"] for c in cells if c], label=method)
    ax.axhline(result["teacher"]["srcc"], color="k", ls="--", lw=1, label="teacher")
    ax.set_xticks(range(len(students)), students)
    ax.set_ylabel("SRCC on CLIVE test (mean ± std over seeds)")
    ax.set_ylim(0, 1)
    ax.legend(ncol=5, fontsize=8, loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--config",
        nargs="+",
        default=[f"{student}={path}" for student, path in README_CONFIGS.items()],
        help="FILE for every student and/or STUDENT=FILE for one",
    )
    ap.add_argument("--students", nargs="+", default=list(STUDENTS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--runs", default="runs/distill_clive", help="folder for the runs' checkpoints")
    ap.add_argument("--out", default="benchmarks/results/distill_clive.json")
    ap.add_argument("--teacher-json", default="benchmarks/results/teacher_clive_ml_all.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument(
        "--include",
        nargs="+",
        default=[],
        metavar="RESULT_JSON",
        help="take the finished runs of the selected students/methods/seeds from these result files (same teacher)",
    )
    ap.add_argument(
        "--collect-only",
        action="store_true",
        help="train nothing: write the table from the runs in --out and --include, listing the missing ones",
    )
    ap.add_argument("--quick", action="store_true", help="3 steps per stage: checks the pipeline, not the methods")
    args = ap.parse_args()
    args.configs = parse_configs(args.config)
    if args.quick:
        args.runs, args.out, args.n_boot = args.runs + "_quick", str(Path(args.out).with_suffix(".quick.json")), 50
    torch.set_num_threads(args.threads)
    t0 = time.time()
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    runs = {(r["student"], r["method"], r["seed"]): r for r in previous.get("runs", [])}

    base = check_shared_setup([load_config(DistillRunConfig, config_for(args, s)) for s in args.students])
    test_ds = get_dataset(base.labelled.dataset, base.labelled.root).subset("test")
    teacher_model = load(base.teacher)
    reported = json.loads(Path(args.teacher_json).read_text())
    teacher = {
        "model": teacher_model.name,
        "srcc": reported["srcc"],
        "plcc": reported["plcc"],
        "eval_mode": reported["eval_mode"],
        "fingerprint": teacher_fingerprint(teacher_model),
        "reported_in": args.teacher_json,
    }
    included = {path: json.loads(Path(path).read_text()) for path in args.include}
    args.included_wall = {path: other.get("wall_seconds") for path, other in included.items()}
    measured = [other["teacher"] for other in included.values()] if args.collect_only else []
    if measured and measured[0].get("fingerprint") == teacher["fingerprint"]:  # a merge re-times nothing
        teacher.update({k: measured[0][k] for k in ("params", "macs", "latency_ms_p50")})
    else:
        teacher.update(cost(teacher_model, 500, args.threads))
    del teacher_model
    check_same_teacher(teacher, out, previous, Path(args.runs))
    for path, other in included.items():
        include_runs(runs, path, other, teacher, args)

    for student in args.students:
        for seed in args.seeds:  # seed-major: an interrupted grid still has every method for the first seeds
            for method in args.methods:
                key = (student, method, seed)
                if key in runs or args.collect_only:
                    continue
                cfg = run_config(args, student, method, seed)
                summary = distill(cfg, progress=False)
                model = load(Path(cfg.out_dir) / "best")
                row = {
                    "student": student,
                    "method": method,
                    "seed": seed,
                    **test_metrics(model, test_ds, args.n_boot),
                    **cost(model, 500, args.threads),
                    "val_srcc": summary["best"]["srcc"],
                    "best_at": {"stage": summary["best"]["stage"], "epoch": summary["best"]["epoch"]},
                    "train_seconds": summary["wall_seconds"],
                    "steps": summary["total_steps"],
                    "config": config_for(args, student),
                }
                runs[key] = row
                print(json.dumps({k: row[k] for k in ("student", "method", "seed", "srcc", "plcc", "val_srcc")}))
                write(args, out, teacher, list(runs.values()), previous, t0)
    result = write(args, out, teacher, list(runs.values()), previous, t0)
    print(markdown(result))
    if result["missing"]:
        print(f"missing ({len(result['missing'])} runs): {' '.join(result['missing'])}")


def check_shared_setup(configs: list[DistillRunConfig]) -> DistillRunConfig:
    """The students' configs must share the teacher and the labelled data, or the table compares nothing."""
    first = configs[0]
    for cfg in configs[1:]:
        for key in ("teacher", "labelled"):
            if getattr(cfg, key) != getattr(first, key):
                raise SystemExit(f"--config: the students' files differ in {key!r}; one table needs one {key}")
    return first


def check_same_teacher(teacher: dict, out: Path, previous: dict, runs_dir: Path) -> None:
    """Refuses to mix, in one table or one runs folder, students distilled from different teachers.

    Finished runs are skipped on resume, so a changed teacher would otherwise sit beside runs of
    the old one. A new teacher needs a new ``--out`` and ``--runs``.
    """
    marker = runs_dir / "teacher.json"
    seen = [(str(out), previous["teacher"].get("fingerprint"))] if previous.get("runs") else []
    if marker.is_file():
        seen.append((str(marker), json.loads(marker.read_text()).get("fingerprint")))
    for where, fingerprint in seen:
        if fingerprint != teacher["fingerprint"]:
            raise SystemExit(
                f"{where} holds runs distilled from another teacher (fingerprint {fingerprint}, the teacher now is "
                f"{teacher['fingerprint']}): give this teacher a new --out and --runs"
            )
    runs_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({k: teacher[k] for k in ("model", "fingerprint", "srcc", "plcc")}, indent=2))


def include_runs(runs: dict, path: str, other: dict, teacher: dict, args) -> None:
    """Adds to ``runs`` the finished runs that ``other`` (the result file ``path``) holds for this selection.

    Grids split across folders or machines become one table this way. The file must come
    from the same teacher, and a run already in ``runs`` must agree with it.
    """
    if other.get("teacher", {}).get("fingerprint") != teacher["fingerprint"]:
        raise SystemExit(f"--include {path}: its runs were distilled from another teacher; one table needs one")
    for row in other.get("runs", []):
        key = (row["student"], row["method"], row["seed"])
        if row["student"] not in args.students or row["method"] not in args.methods or row["seed"] not in args.seeds:
            continue
        if key in runs and runs[key]["srcc"] != row["srcc"]:
            raise SystemExit(f"--include {path}: {key} is also in the table, with another result")
        runs[key] = {**row, "included_from": str(path)}


def command_line(args, out: Path) -> str:
    """The command that reproduces this table, with every selection that differs from the defaults."""
    parts = ["python benchmarks/distill_clive.py --config", *args.config]
    for flag, value, default in (
        ("--students", args.students, list(STUDENTS)),
        ("--methods", args.methods, list(METHODS)),
        ("--seeds", args.seeds, [0, 1, 2]),
    ):
        if list(value) != default:
            parts += [flag, *map(str, value)]
    parts += ["--include", *args.include] if args.include else []
    parts += ["--runs", args.runs, "--out", str(out)]
    return " ".join(parts + ["--collect-only"] * args.collect_only + ["--quick"] * args.quick)


def missing_runs(args, runs: list[dict]) -> list[str]:
    """The selected student/method/seed cells that have no run yet, as ``student/method/seedN``."""
    done = {(r["student"], r["method"], r["seed"]) for r in runs}
    cells = [(st, m, seed) for st in args.students for seed in args.seeds for m in args.methods]
    return [f"{st}/{m}/seed{seed}" for st, m, seed in cells if (st, m, seed) not in done]


def write(args, out: Path, teacher: dict, runs: list[dict], previous: dict, t0: float) -> dict:
    result = {
        "teacher": teacher,
        "runs": sorted(runs, key=lambda r: (r["student"], METHODS.index(r["method"]), r["seed"])),
        "summary": [],
        "protocol": "CLIVE test (230 images), full image; checkpoint chosen by SRCC on the val split of train",
        "configs": sorted({(r["student"], r["config"]) for r in runs}),
        "command": command_line(args, out),
        "wall_seconds": round(previous.get("wall_seconds", 0.0) + time.time() - t0, 1),
        "missing": missing_runs(args, runs),
    }
    if args.include:  # their runs' wall time is counted in their own files
        result["included"] = args.included_wall
    result["summary"] = summarise(result["runs"], teacher)
    write_result(out, result, markdown(result))
    bar_chart(result, out.with_suffix(".png"))
    return result


if __name__ == "__main__":
    main()
