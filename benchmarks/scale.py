"""Training throughput with 1 and N processes (torchrun): views/s of a function-matching distillation.

Each cell runs `kdiqa distill` on the given config for ``--epochs`` short epochs of ``--views`` views, once
as a plain process and once under ``torchrun --standalone --nproc-per-node N`` for each N, and reports the
steady-state rate (the last epoch's train_views / train_seconds; validation excluded) and the speed-up over
one process. On a CPU the processes share the cores: ``--threads`` is the total, split evenly between the
processes, so the comparison measures what DDP costs or gains on the same hardware. On GPUs (``--device
cuda``), each process takes its own GPU.

    python benchmarks/scale.py --nproc 1 2 --threads 2                     # 2 CPU cores (gloo)
    python benchmarks/scale.py --nproc 1 2 4 8 --device cuda --amp bf16    # a machine with 8 GPUs (NCCL)

``--set KEY=VALUE`` (repeatable) overrides the config as ``kdiqa distill --set`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from kdiqa.bench.results import write_result
from kdiqa.runs import read_history

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "experiments" / "function_matching" / "distill_edge.yaml"


def run_cell(nproc: int, args, out: Path) -> dict:
    threads = max(1, args.threads // nproc) if args.device == "cpu" else args.threads
    views = args.views * args.epochs
    stages = f"stages=[{{stage: soft, data: views, views: {views}, epochs: {args.epochs}, lr: 2.0e-3}}]"
    sets = [stages, f"out_dir={out}", f"threads={threads}", f"device={args.device}", f"amp={args.amp}"]
    sets += [f"labelled.batch_size={args.batch_size}", "snapshots=false", f"labelled.workers={args.workers}"]
    sets += args.set
    cmd = [sys.executable, "-m", "kdiqa", "distill", "--config", str(args.config), "--quiet"]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
        cmd += ["-m", "kdiqa", "distill", "--config", str(args.config), "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{nproc} process(es) failed:\n{proc.stderr[-2000:]}")
    last = read_history(out)[-1]
    return {
        "processes": nproc,
        "threads_per_process": threads,
        "global_batch": args.batch_size,
        "views_per_s": round(last["train_views"] / last["train_seconds"], 2),
        "epoch_seconds": last["train_seconds"],
        "wall_s": round(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(CONFIG), help="a distillation config with a `data: views` recipe")
    ap.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, default=2, help="CPU: total threads, split between the processes")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (each process its own GPU)")
    ap.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    ap.add_argument("--views", type=int, default=640, help="views per epoch")
    ap.add_argument("--epochs", type=int, default=2, help="the last epoch is timed")
    ap.add_argument("--batch-size", type=int, default=32, help="the global batch (shared by the processes)")
    ap.add_argument("--workers", type=int, default=0, help="data-loading processes per training process")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.nproc:
            row = run_cell(n, args, Path(tmp) / f"p{n}")
            row["speedup"] = round(row["views_per_s"] / rows[0]["views_per_s"], 3) if rows else 1.0
            print(json.dumps(row), flush=True)
            rows.append(row)
    meta = {
        "config": str(Path(args.config).relative_to(ROOT)) if Path(args.config).is_relative_to(ROOT) else args.config,
        "device": args.device,
        "amp": args.amp,
        "cpus": os.cpu_count(),
        "gpus": torch.cuda.device_count(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "backend": "nccl" if args.device.startswith("cuda") else "gloo",
        "views_per_epoch": args.views,
        "workers": args.workers,
        "overrides": args.set,
    }
    lines = ["| processes | threads each | views/s | speed-up | epoch s |", "|---|---|---|---|---|"]
    keys = ("processes", "threads_per_process", "views_per_s", "speedup", "epoch_seconds")
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    settings = "\n".join(f"- {k.replace('_', ' ')}: {v}" for k, v in meta.items())
    write_result(
        args.out,
        {"meta": meta, "rows": rows},
        "# Training throughput, 1 vs N processes\n\n" + settings + "\n\n" + "\n".join(lines) + "\n",
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
