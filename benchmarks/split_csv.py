"""Writes the image list of one split of a dataset, after the validation split is carved out, as a pool CSV.

Runs compared on a validation split must not show its images to any stage of the student, not even
unlabelled (a pretext task, a pool). ``kdiqa distill`` drops them from its pool by itself; ``kdiqa pretext``
reads plain sources, so it gets this list instead (an ``image`` column of absolute paths).

    python benchmarks/split_csv.py --dataset clive --val-fraction 0.15 --split train --out runs/clive_train_noval.csv

The dataset is read from ``--root``, or else from ``<data root>/<dataset>`` (``KDIQA_DATA``).
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

from kdiqa.data.datasets import get_dataset


def split_paths(dataset: str, root: str | None, split: str, val_fraction: float, val_seed: int) -> list[str]:
    """Absolute image paths of ``split`` once ``val_fraction`` of train is carved out (as the engines do)."""
    ds = get_dataset(dataset, root)
    if val_fraction > 0:
        ds = ds.carve_val(val_fraction, seed=val_seed)
    rows = ds.subset(split).rows
    if not rows:
        raise SystemExit(f"{dataset}: split {split!r} is empty")
    return [os.path.realpath(r.path) for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="clive")
    ap.add_argument("--root", help="the dataset's folder (default: <data root>/<dataset>)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--val-fraction", type=float, default=0.15)
    ap.add_argument("--val-seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    paths = split_paths(args.dataset, args.root, args.split, args.val_fraction, args.val_seed)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image"])
        writer.writerows([p] for p in paths)
    print(f"{len(paths)} images → {args.out}")


if __name__ == "__main__":
    main()
