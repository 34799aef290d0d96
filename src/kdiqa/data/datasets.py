"""The dataset abstraction: a table of rows (image, MOS, std, split) plus score metadata.

Scores are normalised internally to [0, 1] with higher = better (``normalize``), and reported back
on the dataset's own scale (``denormalize``). Adapters for the official file layouts live in
:mod:`kdiqa.data.adapters` and are looked up by name with :func:`get_dataset`.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..registry import Registry
from .io import load_image

DATASETS = Registry("dataset")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Row:
    """One rated image: absolute path, score on the dataset's scale, optional std, split, reference."""

    path: str
    mos: float
    std: float | None = None
    split: str = "train"
    ref: str | None = None  # reference/content id: splits of synthetic datasets keep it disjoint


@dataclass
class IQADataset:
    """Rows of rated images plus the metadata needed to interpret the scores.

    Args:
        name: short dataset name.
        rows: the rated images.
        score_range: (low, high) of the score scale, e.g. (0, 100) for CLIVE.
        higher_better: False for DMOS datasets (LIVE, CSIQ, KADID is MOS so True).

    Example:
        >>> ds = IQADataset("toy", [Row("a.png", 20.0), Row("b.png", 80.0, split="test")], (0, 100))
        >>> len(ds.subset("train")), ds.normalize(80.0), ds.denormalize(0.8)
        (1, 0.8, 80.0)
    """

    name: str
    rows: list[Row]
    score_range: tuple[float, float]
    higher_better: bool = True
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def normalize(self, score: float | np.ndarray) -> float | np.ndarray:
        """Dataset scale → [0, 1], higher = better."""
        lo, hi = self.score_range
        z = (np.asarray(score, dtype=np.float64) - lo) / (hi - lo)
        z = z if self.higher_better else 1.0 - z
        return float(z) if np.ndim(z) == 0 else z

    def denormalize(self, z: float | np.ndarray) -> float | np.ndarray:
        """[0, 1] higher = better → dataset scale."""
        lo, hi = self.score_range
        z = np.asarray(z, dtype=np.float64)
        z = z if self.higher_better else 1.0 - z
        s = z * (hi - lo) + lo
        return float(s) if np.ndim(s) == 0 else s

    def subset(self, split: str | Sequence[str] | None) -> IQADataset:
        """Rows of one split (or several); ``None`` or "all" keeps everything."""
        if split is None or split == "all":
            return self
        wanted = {split} if isinstance(split, str) else set(split)
        unknown = wanted - {r.split for r in self.rows}
        if unknown and not any(r.split in wanted for r in self.rows):
            have = sorted({r.split for r in self.rows})
            raise ValueError(f"dataset {self.name!r} has no split {sorted(unknown)}; it has {have}")
        return replace(self, rows=[r for r in self.rows if r.split in wanted])

    def carve_val(self, fraction: float, seed: int = 0) -> IQADataset:
        """Moves a seeded random ``fraction`` of the ``train`` rows into a ``val`` split.

        Reference-disjoint when rows carry a ``ref``. Rows already in other splits are unchanged.
        """
        train = [r for r in self.rows if r.split == "train"]
        val_keys = set(_split_keys([_group_key(r) for r in train], fraction, seed))
        rows = [replace(r, split="val") if r.split == "train" and _group_key(r) in val_keys else r for r in self.rows]
        return replace(self, rows=rows)

    def keep_labels(self, fraction: float, seed: int = 0) -> IQADataset:
        """Keeps the scores of a seeded ``fraction`` of the ``train`` rows; the others move to split ``unlabelled``.

        For label-scarce experiments: a student trains on the MOS of the rows kept, while the images
        of the others can still enter an unlabelled pool. Reference-disjoint when rows carry a
        ``ref``; nested: with one seed, a smaller fraction keeps a subset of a larger one's rows.
        Call it after :meth:`carve_val`, so the validation split does not depend on ``fraction``.

        Example:
            >>> ds = IQADataset("toy", [Row(f"{i}.png", float(i)) for i in range(8)], (0, 10))
            >>> [len(ds.keep_labels(0.25).subset(s)) for s in ("train", "unlabelled")]
            [2, 6]
        """
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
        train = [r for r in self.rows if r.split == "train"]
        groups = sorted({_group_key(r) for r in train})
        n_drop = len(groups) - max(1, round(fraction * len(groups)))  # at least one labelled group
        dropped = set(_first_keys(groups, n_drop, seed))
        rows = [
            replace(r, split="unlabelled") if r.split == "train" and _group_key(r) in dropped else r for r in self.rows
        ]
        return replace(self, rows=rows)

    def mos_array(self) -> np.ndarray:
        return np.array([r.mos for r in self.rows], dtype=np.float64)


def _group_key(row: Row) -> str:
    return row.ref if row.ref is not None else row.path


def _split_keys(keys: Sequence[str], fraction: float, seed: int) -> list[str]:
    """A repeatable seeded choice of ``round(fraction · #groups)`` distinct keys."""
    groups = sorted(set(keys))
    return _first_keys(groups, round(fraction * len(groups)), seed)


def _first_keys(groups: Sequence[str], n: int, seed: int) -> list[str]:
    """The first ``n`` of a seeded permutation of ``groups``: the same seed gives nested choices."""
    order = np.random.default_rng(seed).permutation(len(groups))
    return [groups[i] for i in order[:n]]


def random_split(rows: list[Row], test_fraction: float = 0.2, index: int = 0, seed: int = 0) -> list[Row]:
    """Seeded, repeatable train/test split by reference (content-disjoint), for datasets without one.

    ``index`` selects one of many splits (the protocol's "10 random 80/20 splits"); the same
    (index, seed) always gives the same split.
    """
    mixed = int(hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:8], 16)
    test_keys = set(_split_keys([_group_key(r) for r in rows], test_fraction, mixed))
    return [replace(r, split="test" if _group_key(r) in test_keys else "train") for r in rows]


def get_dataset(name: str, root: str | Path | None = None, **kwargs) -> IQADataset:
    """Builds a dataset by adapter name.

    Args:
        name: a registered adapter ("clive", "koniq10k", ...) or ``csv:PATH`` for a generic CSV.
        root: the dataset's folder (its official layout); for ``csv:`` the images are relative
            to the CSV's folder unless ``root`` is given.
        **kwargs: adapter options, e.g. ``split_index``/``seed`` for random splits.
    """
    from . import adapters

    if name.startswith("csv:"):
        return adapters.generic_csv(name[4:], root=root, **kwargs)
    if root is None:
        raise ValueError(f"dataset {name!r} needs root= (the folder of its official release)")
    return DATASETS.get(name)(Path(root), **kwargs)


def read_csv(path: str | Path) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


class TorchIQADataset(Dataset):
    """A PyTorch view of an :class:`IQADataset`: decoded, transformed images and normalised scores.

    Each item is ``{"image": Tensor, "score": float tensor in [0,1], "index": int}``.
    """

    def __init__(self, ds: IQADataset, transform: Callable, repeat: int = 1) -> None:
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
