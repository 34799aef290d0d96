"""Batch scoring of image files (``kdiqa score``): files, folders (recursive) and globs.

A file that fails to decode is reported with its reason and the rest are scored. With a CSV output,
rows are appended as they are computed, so an interrupted job loses nothing and ``resume`` skips
what is already there.
"""

from __future__ import annotations

import sys

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .data.io import ImageLoadError, load_image
from .data.transforms import EvalTransform
from .evaluation import collate_list, forward_views
from .models.iqa import IQAModel
from .score_io import CsvSink, ScoreResult, collect_paths, write_json

__all__ = ["CsvSink", "ScoreResult", "collect_paths", "score_paths", "write_json"]


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
