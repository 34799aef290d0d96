"""Datasets by name, and their PyTorch view.

:func:`get_dataset` builds an :class:`~kdiqa.data.table.IQADataset` (rows + score metadata) with a
registered adapter (:mod:`kdiqa.data.adapters`: one per official file layout) or from a generic CSV;
:class:`TorchIQADataset` decodes and transforms its images for training and evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..paths import dataset_root, resolve
from .adapters import DATASETS, generic_csv
from .io import load_image
from .table import SPLITS, IQADataset, Row, random_split, read_csv

__all__ = [
    "DATASETS",
    "SPLITS",
    "IQADataset",
    "Row",
    "TorchIQADataset",
    "get_dataset",
    "random_split",
    "read_csv",
]


def get_dataset(name: str, root: str | Path | None = None, **kwargs) -> IQADataset:
    """Builds a dataset by adapter name.

    Args:
        name: a registered adapter ("clive", "koniq10k", ...) or ``csv:PATH`` for a generic CSV.
        root: the dataset's folder (its official layout); None: ``<data root>/<name>`` (:mod:`kdiqa.paths`).
            For ``csv:`` the images are relative to the CSV's folder unless ``root`` is given.
            ``data:`` paths (here and in ``csv:PATH``) resolve against the data root.
        **kwargs: adapter options, e.g. ``split_index``/``seed`` for random splits.
    """
    if name.startswith("csv:"):
        return generic_csv(resolve(name[4:]), root=None if root is None else resolve(root), **kwargs)
    adapter = DATASETS.get(name)
    return adapter(Path(dataset_root(name, root)), **kwargs)


class TorchIQADataset(Dataset):
    """A PyTorch view of an :class:`IQADataset`: decoded, transformed images and normalised scores.

    Each item is ``{"image": Tensor, "score": float tensor in [0,1], "index": int}``.
    """

    def __init__(self, ds: IQADataset, transform: Callable, repeat: int = 1) -> None:
        if not ds.rows:
            where = f" in split {ds.meta['split']}" if "split" in ds.meta else ""
            raise ValueError(f"dataset {ds.name!r} has no rows{where} to load")
        self.ds = ds
        self.transform = transform
        self.repeat = repeat

    def __len__(self) -> int:
        return len(self.ds) * self.repeat

    def __getitem__(self, i: int) -> dict:
        idx = i % len(self.ds)
        row = self.ds.rows[idx]
        img = self.transform(load_image(row.path))
        score = torch.tensor(self.ds.normalize(row.mos), dtype=torch.float32)
        return {"image": img, "score": score, "index": idx}
