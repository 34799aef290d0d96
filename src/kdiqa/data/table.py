"""The dataset abstraction: a table of rows (image, MOS, std, split) plus score metadata.

Scores are normalised internally to [0, 1] with higher = better (``normalize``), and reported back
on the dataset's own scale (``denormalize``). Numpy only: the adapters (:mod:`kdiqa.data.adapters`)
build these tables and :mod:`kdiqa.data.datasets` looks them up by name and loads their images.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test", "unlabelled")  # "unlabelled": train rows whose scores are withheld


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
        """Rows of one split (or several); ``None`` or "all" keeps everything.

        A standard split (:data:`SPLITS`) the dataset has no rows in gives an empty dataset (a CSV of
        test rows only has an empty ``train``); any other name is an error. The selection is kept in
        ``meta["split"]``, so code that needs rows can say which split was empty.

        Example:
            >>> ds = IQADataset("toy", [Row("a.png", 1.0, split="test")], (0, 5))
            >>> len(ds.subset("test")), len(ds.subset("train")), ds.subset("train").meta["split"]
            (1, 0, ['train'])
        """
        if split is None or split == "all":
            return self
        wanted = {split} if isinstance(split, str) else set(split)
        have = sorted({r.split for r in self.rows})
        unknown = wanted - set(SPLITS) - set(have)
        if unknown:
            raise ValueError(f"dataset {self.name!r} has no split {sorted(unknown)}; it has {have}")
        rows = [r for r in self.rows if r.split in wanted]
        return replace(self, rows=rows, meta={**self.meta, "split": sorted(wanted)})

    def carve_val(self, fraction: float, seed: int = 0) -> IQADataset:
        """Moves a seeded random ``fraction`` of the ``train`` rows into a ``val`` split.

        Reference-disjoint when rows carry a ``ref``. Rows already in other splits are unchanged; a
        dataset without ``train`` rows (a CSV of test rows only) is returned as it is.
        """
        train = [r for r in self.rows if r.split == "train"]
        val_keys = set(_split_keys([_group_key(r) for r in train], fraction, seed))
        rows = [replace(r, split="val") if r.split == "train" and _group_key(r) in val_keys else r for r in self.rows]
        return replace(self, rows=rows)

    def carve(
        self, val_fraction: float = 0.0, val_seed: int = 0, label_fraction: float = 1.0, label_seed: int = 0
    ) -> IQADataset:
        """A run's splits: :meth:`carve_val` (``val_fraction`` of train, never of test), then
        :meth:`keep_labels` (``label_fraction`` of the rest), so validation is the same at every
        label fraction. Training and evaluation carve alike, so a run's own validation or test
        rows can be reproduced. A dataset without train rows is returned as it is.

        Example:
            >>> ds = IQADataset("toy", [Row(f"{i}.png", float(i)) for i in range(10)], (0, 10))
            >>> [len(ds.carve(0.2, label_fraction=0.5).subset(s)) for s in ("val", "train", "unlabelled")]
            [2, 4, 4]
        """
        if not 0 <= val_fraction < 1:
            raise ValueError(
                f"val_fraction must be in [0, 1): the share of train carved out for validation, got {val_fraction}"
            )
        ds = self.carve_val(val_fraction, seed=val_seed) if val_fraction > 0 else self
        return ds.keep_labels(label_fraction, seed=label_seed) if label_fraction != 1 else ds  # rejects > 1

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


def read_csv(path: str | Path) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))
