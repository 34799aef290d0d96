"""Batch scoring of image files (``kdiqa score``): files, folders (recursive) and globs.

A file that fails to decode is reported with its reason and the rest are scored. With a CSV output,
rows are appended as they are computed, so an interrupted job loses nothing and ``resume`` skips
what is already there.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .data.io import ImageLoadError, is_image_file, load_image
from .data.transforms import EvalTransform
from .evaluation import collate_list, forward_views
from .models.iqa import IQAModel


@dataclass
class ScoreResult:
    path: str
    score: float | None = None
    error: str | None = None


def collect_paths(inputs: list[str]) -> tuple[list[str], list[ScoreResult]]:
    """Expands files, folders (recursively, image extensions only) and glob patterns.

    Returns the image paths (sorted, de-duplicated, in input order) and a failure for each input
    that matched nothing.
    """
    paths: list[str] = []
    failures: list[ScoreResult] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.is_file() and is_image_file(f))
            if not found:
                failures.append(ScoreResult(item, error="folder contains no image files"))
            paths += found
        elif p.exists():
            paths.append(str(p))
        elif glob.has_magic(item):
            found = sorted(f for f in glob.glob(item, recursive=True) if os.path.isfile(f))
            if not found:
                failures.append(ScoreResult(item, error="pattern matched no files"))
            paths += found
        else:
            failures.append(ScoreResult(item, error="file not found"))
    return list(dict.fromkeys(paths)), failures


class _ScoreDataset(Dataset):
    def __init__(self, paths: list[str], transform: EvalTransform) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return i, self.transform(load_image(self.paths[i])), None
        except ImageLoadError as exc:
            return i, None, exc.reason


def score_paths(
    model: IQAModel,
    paths: list[str],
    transform: EvalTransform,
    batch_size: int = 8,
    workers: int = 0,
    progress: bool = True,
    on_result=None,
) -> list[ScoreResult]:
    """Scores every path; failures are returned as results with ``error`` set, never raised.

    ``on_result`` is called with each :class:`ScoreResult` as soon as it is known.
    """
    model.eval()
    device = next(model.parameters()).device
    loader = DataLoader(
        _ScoreDataset(paths, transform), batch_size=batch_size, num_workers=workers, collate_fn=collate_list
    )
    results: list[ScoreResult | None] = [None] * len(paths)
    bar = tqdm(total=len(paths), desc="score", unit="img", disable=not progress, file=sys.stderr)
    with torch.no_grad():
        for items in loader:
            done = [(i, ScoreResult(paths[i], error=err)) for i, _, err in items if err is not None]
            scores = forward_views(model, [(i, v) for i, v, err in items if err is None], device)
            done += [
                (i, ScoreResult(paths[i], score=model.to_output_scale(z.mean()).item())) for i, z in scores.items()
            ]
            for i, r in sorted(done, key=lambda t: t[0]):
                results[i] = r
                if on_result:
                    on_result(r)
            bar.update(len(items))
    bar.close()
    return [r for r in results if r is not None]


class CsvSink:
    """Appends results to a CSV as they arrive (``path,score,error``); ``done()`` lists finished paths."""

    FIELDS = ("path", "score", "error")

    def __init__(self, path: str | Path, append: bool = False) -> None:
        """``append``: keep the rows already in ``path`` (resume); otherwise start a new file."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not append or not self.path.exists() or self.path.stat().st_size == 0
        self.fh = open(self.path, "w" if new else "a", newline="")  # noqa: SIM115  (kept open while rows stream)
        self.writer = csv.writer(self.fh)
        if new:
            self.writer.writerow(self.FIELDS)
            self.fh.flush()

    def done(self) -> set[str]:
        with open(self.path, newline="") as fh:
            return {r["path"] for r in csv.DictReader(fh) if r.get("score")}

    def __call__(self, r: ScoreResult) -> None:
        self.writer.writerow([r.path, "" if r.score is None else f"{r.score:.6g}", r.error or ""])
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def write_json(results: list[ScoreResult], path: str | Path, model_name: str) -> None:
    payload = {"model": model_name, "results": [r.__dict__ for r in results]}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2))
