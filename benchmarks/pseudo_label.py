"""Pseudo-labelling throughput versus the teacher's pure forward rate, in one run.

    python benchmarks/pseudo_label.py --teacher teacher --pool configs/pool/default.yaml --n-items 256

1. Pure forward: the teacher on preloaded (B, 3, crop, crop) tensors, images/s.
2. ``pseudo_label`` on an evenly spaced sample of the pool (clean + distorted items), on the fly
   (decode + distort in DataLoader workers) and from a materialised cache (``materialize``), images/s.
The ratios to (1) say whether decoding and distortion keep the model busy (goal ≥ 0.9). Writes
``benchmarks/results/pseudo_label.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from kdiqa.checkpoint import WEIGHTS_NAME, file_sha256
from kdiqa.config import load_config
from kdiqa.data.pools import PoolConfig, build_items, materialize
from kdiqa.hub import load, resolve_folder
from kdiqa.softlabels import pseudo_label


def forward_rate(model, crop: int, batch: int, n_batches: int) -> float:
    x = torch.rand(batch, 3, crop, crop)
    with torch.no_grad():
        model(x)  # warm-up
        t0 = time.perf_counter()
        for _ in range(n_batches):
            model(x)
    return batch * n_batches / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="teacher")
    ap.add_argument("--pool", default="configs/pool/default.yaml")
    ap.add_argument("--n-items", type=int, default=256)
    ap.add_argument("--crop", type=int, default=384)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/pseudo_label.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    teacher = load(args.teacher)
    sha = file_sha256(resolve_folder(args.teacher) / WEIGHTS_NAME)
    items = build_items(load_config(PoolConfig, args.pool))
    step = max(1, len(items) // args.n_items)
    sample = items[::step][: args.n_items]

    fwd = forward_rate(teacher, args.crop, args.batch_size, max(2, args.n_items // args.batch_size // 2))
    rows = {"forward_preloaded": {"images_per_s": round(fwd, 2)}}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cache = materialize(sample, Path(tmp) / "cache", workers=args.workers, progress=False)
        mat_s = time.perf_counter() - t0
        for name, cache_dir in (("pseudo_label_on_the_fly", None), ("pseudo_label_materialized", cache["cache_dir"])):
            s = pseudo_label(
                teacher,
                sha,
                sample,
                Path(tmp) / f"{name}.sqlite",
                crop=args.crop,
                views=1,
                batch_size=args.batch_size,
                workers=args.workers,
                progress=False,
                cache_dir=cache_dir,
            )
            rows[name] = {
                "images_per_s": s["images_per_s"],
                "ratio_to_forward": round(s["images_per_s"] / fwd, 3),
                "labelled": s["labelled"],
                "seconds": s["seconds"],
            }
        rows["materialize"] = {"images_per_s": round(cache["written"] / mat_s, 2), "written": cache["written"]}
    payload = {
        "teacher": teacher.name,
        "teacher_sha256": sha,
        "crop": args.crop,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "threads": args.threads,
        "n_items": len(sample),
        "distorted_items": sum(it.dist_type is not None for it in sample),
        "pool": args.pool,
        "cpu": platform.processor() or platform.machine(),
        "results": rows,
        "ratio_on_the_fly": rows["pseudo_label_on_the_fly"]["ratio_to_forward"],
        "ratio_materialized": rows["pseudo_label_materialized"]["ratio_to_forward"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2))
    print(f"{'stage':28s} {'images/s':>9s} {'ratio':>6s}")
    for name, r in rows.items():
        print(f"{name:28s} {r['images_per_s']:9.2f} {r.get('ratio_to_forward', ''):>6}")


if __name__ == "__main__":
    main()
