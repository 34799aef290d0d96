"""Torch-free pieces of batch scoring, shared by the torch and ONNX Runtime backends: expanding the
inputs into image paths, the per-image result, and the CSV/JSON outputs.
"""

from __future__ import annotations

import csv
import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .data.io import is_image_file


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
