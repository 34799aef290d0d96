"""What a distillation run trains on: the labelled crops, the unlabelled pool, and where the
teacher's targets come from for each.

A pool batch gets its teacher targets from one of three places: the teacher online (the default),
a soft-label file written by ``kdiqa pseudo-label`` (``soft_labels``: the teacher's mean score per
pool item over its views, for the score-only methods), or the teacher cache (``cache.enabled``: fixed
crops with the teacher's scores and stage maps, see :mod:`kdiqa.distill.cache`).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Sampler

from ..checkpoint import WEIGHTS_NAME, file_sha256
from ..data.io import load_image
from ..data.pools import PoolItem, build_items, source_images
from ..softlabels import SoftLabelDataset, read_meta_file
from .base import MOS_PREFIX
from .cache import CachedCrops, CacheSource, build_cache


class PoolCrops(Dataset):
    """Unrated pool items as training crops (``score`` is NaN: the teacher labels them online)."""

    def __init__(self, items: list[PoolItem], transform) -> None:
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.transform(self.items[i].render()), "score": torch.tensor(float("nan")), "index": -1}


class GroupedBatches(Sampler):
    """Shuffled batches that never mix the parts of a ConcatDataset (e.g. a pool cache of 224 px crops
    and a labelled cache of 320 px crops cannot share a batch); the batch order is shuffled too.
    Incomplete batches are dropped. A plain dataset is one part: ordinary shuffled batches. With
    ``passes`` > 1 the passes follow each other, each freshly shuffled (a stage asking for more steps
    than one pass holds gets them all, so every method of an ablation trains for the same steps)."""

    def __init__(self, dataset: Dataset, batch_size: int, generator: torch.Generator, passes: int = 1) -> None:
        sizes = [len(d) for d in dataset.datasets] if isinstance(dataset, ConcatDataset) else [len(dataset)]
        self.offsets, self.sizes = np.cumsum([0, *sizes[:-1]]).tolist(), sizes
        self.batch_size, self.generator, self.passes = batch_size, generator, passes

    def __len__(self) -> int:
        return self.passes * sum(n // self.batch_size for n in self.sizes)

    def __iter__(self):
        for _ in range(self.passes):
            batches = []
            for off, n in zip(self.offsets, self.sizes, strict=True):
                order = (torch.randperm(n, generator=self.generator) + off).tolist()
                batches += [order[i : i + self.batch_size] for i in range(0, n - self.batch_size + 1, self.batch_size)]
            for k in torch.randperm(len(batches), generator=self.generator).tolist():
                yield batches[k]


def pool_items(cfg, val_ds) -> list[PoolItem]:
    """The pool's train items, minus any image of the labelled validation split (a pool may list the
    labelled train images as unrated sources; the teacher's labels on validation images would leak)."""
    held_out = {os.path.realpath(r.path) for r in val_ds.rows}
    return [it for it in build_items(cfg.pool) if it.split == "train" and os.path.realpath(it.path) not in held_out]


def pool_cache(cfg, teacher, val_ds, progress: bool = True) -> Path:
    """The teacher cache of the run's pool crops (built if it does not exist yet); ``val_ds`` is left out."""
    c = cfg.cache
    items = pool_items(cfg, val_ds)
    unrated = [CacheSource(f"{it.path}|{it.dist_type}|{it.dist_level}|{it.dist_seed}", it.render) for it in items]
    return build_cache(teacher, unrated, c.pool_crop, c.pool_views, c.stages, c.dir, c.batch_size, c.workers, progress)


def cached_data(cfg, teacher, train_ds, val_ds, needs_pool: bool, progress: bool) -> dict:
    """Teacher caches for the pool and the labelled train images (built once, then reused)."""
    c = cfg.cache
    rated = [
        CacheSource(r.path, partial(load_image, r.path), float(z))
        for r, z in zip(train_ds.rows, train_ds.normalize(train_ds.mos_array()), strict=True)
    ]
    out = {
        "labelled_cached": CachedCrops(
            build_cache(
                teacher, rated, c.labelled_crop, c.labelled_views, c.stages, c.dir, c.batch_size, c.workers, progress
            ),
            flip=c.flip,
        )
    }
    if needs_pool:
        out["pool_cached"] = CachedCrops(pool_cache(cfg, teacher, val_ds, progress), flip=c.flip)
        out["both_cached"] = ConcatDataset([out["labelled_cached"], out["pool_cached"]])
    return out


class PoolSoftLabels(Dataset):
    """Pool items with the teacher's stored score (``kdiqa pseudo-label``) as the target, freshly cropped
    by ``transform`` on every access. Items: ``{"image", "score": NaN (no MOS), "t_score"}``."""

    def __init__(self, path: str | Path, items: list[PoolItem], keep: list[PoolItem], transform) -> None:
        self.labels = SoftLabelDataset(path, items, transform, split=None)
        ids = {it.item_id for it in keep}
        self.labels.rows = [r for r in self.labels.rows if r[0].item_id in ids]
        missing = len(ids) - len(self.labels.rows)
        if missing:
            raise ValueError(f"{path}: {missing} of the run's {len(ids)} pool items have no soft label yet")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        item = self.labels[i]
        return {"image": item["image"], "score": torch.tensor(float("nan")), "t_score": item["score"]}


def soft_label_pool(cfg, teacher_folder: Path, val_ds, transform) -> PoolSoftLabels:
    """The run's pool with targets from ``cfg.soft_labels``, checked to come from the run's teacher and pool."""
    meta = read_meta_file(cfg.soft_labels)
    sha = file_sha256(teacher_folder / WEIGHTS_NAME)
    if meta.get("teacher_sha256") != sha:
        raise ValueError(
            f"{cfg.soft_labels} was labelled by another teacher (sha256 {meta.get('teacher_sha256', '?')[:12]}…, "
            f"the run's teacher {cfg.teacher} is {sha[:12]}…)"
        )
    return PoolSoftLabels(cfg.soft_labels, build_items(cfg.pool), pool_items(cfg, val_ds), transform)


def matching_images(cfg, val_ds) -> list[str]:
    """The source images of function-matching views: every image of the pool's sources, except the labelled
    validation images (a view of them would let the teacher's judgement of validation images leak)."""
    held_out = {os.path.realpath(r.path) for r in val_ds.rows}
    images = sorted({p for src in cfg.pool.sources for p in source_images(src)} - held_out)
    if not images:
        raise ValueError("data 'views' needs pool sources with images (pool.sources)")
    return images


class ViewsWithMOS(Dataset):
    """A joint stage on function-matching views: item ``(i, j)`` is view ``i`` (teacher target) together with
    labelled crop ``j`` (MOS), whose keys carry :data:`MOS_PREFIX`. Views and crops may differ in size; the
    Distiller takes the two halves apart (:meth:`~kdiqa.distill.base.Distiller.forward_train`)."""

    def __init__(self, views: Dataset, labelled: Dataset) -> None:
        self.views, self.labelled = views, labelled

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, index: tuple[int, int]) -> dict:
        i, j = index
        return {**self.views[i], **{MOS_PREFIX + k: v for k, v in self.labelled[j].items()}}


class PairedBatches(Sampler):
    """Batches of ``(view, labelled)`` index pairs: the views' batches in order, each paired with a batch of
    the labelled crops (:class:`GroupedBatches`, reshuffled on every pass, as many passes as it takes)."""

    def __init__(self, views: Sampler, labelled: Dataset, batch_size: int, generator: torch.Generator) -> None:
        self.views, self.batch_size = views, batch_size
        self.labelled = GroupedBatches(labelled, batch_size, generator)
        if len(self.labelled) == 0:
            raise ValueError(f"{len(labelled)} labelled items make no batch of {batch_size}")

    def __len__(self) -> int:
        return len(self.views)

    def __iter__(self):
        mos = iter(())
        for batch in self.views:
            lab = next(mos, None)
            if lab is None:
                mos = iter(self.labelled)
                lab = next(mos)
            yield list(zip(batch, lab, strict=True))
