"""Multi-stage distillation runs (``kdiqa distill --config FILE``), resumable at epoch boundaries.

A run is a list of stages, each one of the Distiller's stages (``soft``: teacher labels on the
unlabelled pool, ``joint``: MOS + teacher, ``task``: MOS only) on its data (``pool``, ``labelled`` or
``both``) for some epochs. After every epoch the student (+ adapters) and optimizer are saved to
``out_dir/last``; the student with the best validation SRCC (on the val split carved from the
labelled train set) to ``out_dir/best``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler
from tqdm import tqdm

from ..checkpoint import load_train_state, save_model, save_train_state
from ..data.datasets import TorchIQADataset
from ..data.io import load_image
from ..data.pools import PoolConfig, PoolItem, build_items
from ..data.transforms import EvalTransform, TrainTransform
from ..engine import (
    DataSection,
    EvalSection,
    freeze_prefixes,
    labelled_splits,
    lr_factor,
    prepare_run,
    train_except_frozen,
)
from ..evaluation import predict_paths
from ..hub import load
from ..metrics import srcc
from ..models.zoo import create_model
from .base import DistillConfig, build_distiller
from .cache import CachedCrops, CacheSection, CacheSource, build_cache


@dataclass
class StageSection:
    stage: str = "joint"  # soft | joint | task
    data: str = "labelled"  # pool | labelled | both
    epochs: int = 1
    lr: float = 1e-3
    steps_per_epoch: int | None = None  # exact steps (more than a pass: further shuffled passes); None: one pass


@dataclass
class DistillRunConfig:
    method: str = "response"
    student: str = "iqa_mobilenetv3_small_050"
    student_pretrained: str = "none"
    student_init: str | None = None  # checkpoint folder to start from (e.g. a pretext run)
    student_head_levels: list[int] = field(default_factory=list)  # stages mean+std pooled into its head
    student_freeze: list[str] = field(default_factory=list)  # parameter prefixes kept frozen (BN in eval), as in train
    teacher: str = "teacher"
    distill: DistillConfig = field(default_factory=DistillConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    labelled: DataSection = field(default_factory=DataSection)
    stages: list[StageSection] = field(default_factory=lambda: [StageSection()])
    eval: EvalSection = field(default_factory=lambda: EvalSection(mode="full"))
    cache: CacheSection = field(default_factory=CacheSection)  # teacher targets computed once (cache.py)
    weight_decay: float = 0.01
    out_dir: str = "runs/distill"
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    resume: bool = True


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


def _pool_items(cfg: DistillRunConfig, val_ds) -> list[PoolItem]:
    """The pool's train items, minus any image of the labelled validation split (a pool may list the
    labelled train images as unrated sources; the teacher's labels on validation images would leak)."""
    held_out = {os.path.realpath(r.path) for r in val_ds.rows}
    return [it for it in build_items(cfg.pool) if it.split == "train" and os.path.realpath(it.path) not in held_out]


def pool_cache(cfg: DistillRunConfig, teacher, val_ds, progress: bool = True) -> Path:
    """The teacher cache of the run's pool crops (built if it does not exist yet); ``val_ds`` is left out."""
    c = cfg.cache
    items = _pool_items(cfg, val_ds)
    unrated = [CacheSource(f"{it.path}|{it.dist_type}|{it.dist_level}|{it.dist_seed}", it.render) for it in items]
    return build_cache(teacher, unrated, c.pool_crop, c.pool_views, c.stages, c.dir, c.batch_size, c.workers, progress)


def _cached_data(cfg: DistillRunConfig, teacher, train_ds, val_ds, needs_pool: bool, progress: bool) -> dict:
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


def _learnable_state(distiller) -> dict[str, torch.Tensor]:
    return {k: v for k, v in distiller.state_dict().items() if not k.startswith("teacher.")}


def distill(cfg: DistillRunConfig, progress: bool = True) -> dict:
    """Runs every stage of ``cfg``; returns a summary with the best validation SRCC."""
    t_start = time.time()
    lab = cfg.labelled
    if lab.val_fraction <= 0:
        raise ValueError("labelled.val_fraction must be > 0: distill keeps the checkpoint with the best val SRCC")
    device, out = prepare_run(cfg, "distill_config.json")

    ds, train_ds, val_ds = labelled_splits(lab)
    tf = TrainTransform(lab.crop, lab.resize)
    needs_pool = any(s.data in ("pool", "both") for s in cfg.stages)
    pool = PoolCrops(_pool_items(cfg, val_ds), tf) if needs_pool else None
    labelled = TorchIQADataset(train_ds, tf, lab.repeat)
    data = {"labelled": labelled, "pool": pool, "both": ConcatDataset([labelled, pool]) if pool else None}

    teacher = load(cfg.teacher, device=str(device))
    if cfg.cache.enabled and cfg.method != "none":  # the MOS-only control never needs the teacher
        data.update(_cached_data(cfg, teacher, train_ds, val_ds, needs_pool, progress))
    student = (
        load(cfg.student_init, device=str(device))
        if cfg.student_init
        else create_model(
            cfg.student,
            pretrained=cfg.student_pretrained,
            head_levels=tuple(cfg.student_head_levels),
            score_range=ds.score_range,
            higher_better=ds.higher_better,
            eval_mode=cfg.eval.mode,
            eval_crop=cfg.eval.crop,
        )
    )
    if cfg.student_init:  # a pre-trained checkpoint (e.g. a pretext run) reports on this run's scale and views
        student.cfg.score_range, student.cfg.higher_better = tuple(ds.score_range), ds.higher_better
        student.cfg.eval_mode, student.cfg.eval_crop = cfg.eval.mode, cfg.eval.crop
    freeze_prefixes(student, cfg.student_freeze)
    distiller = build_distiller(cfg.method, student.to(device), teacher, cfg.distill).to(device)
    eval_tf = EvalTransform(cfg.eval.mode, cfg.eval.crop, cfg.eval.n_crops, lab.resize)

    history, best, start = [], {"srcc": -2.0}, (0, 0)
    if cfg.resume and (out / "last" / "train_state.json").is_file():
        distiller.load_state_dict(load_file(str(out / "last" / "distiller.safetensors")), strict=False)
        state = json.loads((out / "last" / "train_state.json").read_text())
        history, best, start = state["history"], state["best"], (state["stage"], state["epoch"] + 1)
        t_start -= state.get("seconds", 0.0)  # wall time of the earlier sessions counts too
        print(f"resumed from {out / 'last'} at stage {start[0]}, epoch {start[1]}")

    step_global = 0
    for si, st in enumerate(cfg.stages):
        if cfg.method == "none":  # the control learns from MOS only: labelled data in every stage
            source = "labelled"
        else:
            source = f"{st.data}_cached" if st.stage != "task" and f"{st.data}_cached" in data else st.data
        if data[source] is None or len(data[source]) == 0:
            raise ValueError(f"stage {si}: no {st.data!r} data (is the pool configured?)")
        per_pass = len(GroupedBatches(data[source], lab.batch_size, torch.Generator()))  # full batches per pass
        if per_pass == 0:
            raise ValueError(f"stage {si}: {len(data[source])} {st.data!r} items make no batch of {lab.batch_size}")
        steps = st.steps_per_epoch or per_pass
        optimizer = torch.optim.AdamW(distiller.learnable_parameters(), lr=st.lr, weight_decay=cfg.weight_decay)
        if start[0] == si and 0 < start[1] < st.epochs:  # resuming inside this stage
            load_train_state(out / "last", optimizer)
        for epoch in range(st.epochs):
            if (si, epoch) < start:
                step_global += steps
                continue
            g = torch.Generator().manual_seed(cfg.seed * 1000 + si * 100 + epoch)
            loader = DataLoader(
                data[source],
                batch_sampler=GroupedBatches(data[source], lab.batch_size, g, passes=-(-steps // per_pass)),
                num_workers=lab.workers,
            )
            distiller.train()
            train_except_frozen(student, cfg.student_freeze)
            sums: dict[str, float] = {}
            bar = tqdm(
                total=steps, desc=f"{cfg.method} stage {si + 1} ({st.stage}) epoch {epoch + 1}", disable=not progress
            )
            for i, batch in enumerate(loader):
                if i >= steps:
                    break
                for grp in optimizer.param_groups:
                    grp["lr"] = st.lr * lr_factor(epoch * steps + i, st.epochs * steps, steps // 2)
                batch = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
                _, losses = distiller.forward_train(batch, st.stage, step_global)
                optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                optimizer.step()
                step_global += 1
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                bar.update(1)
            bar.close()
            z = predict_paths(student, [r.path for r in val_ds.rows], eval_tf, cfg.eval.batch_size)
            v = srcc(z, val_ds.normalize(val_ds.mos_array())) if np.ptp(z) > 0 else 0.0
            record = {
                "stage": si,
                "kind": st.stage,
                "epoch": epoch,
                "val_srcc": v,
                **{f"train_{k}": s / max(1, steps) for k, s in sums.items()},
            }
            history.append(record)
            print(json.dumps(record))
            extra = {"distill_config": asdict(cfg), "metrics": record}
            if v > best["srcc"]:
                best = {"srcc": v, "stage": si, "epoch": epoch}
                save_model(student, out / "best", extra)
            save_model(student, out / "last", extra)
            save_file(
                {k: t.contiguous() for k, t in _learnable_state(distiller).items()},
                str(out / "last" / "distiller.safetensors"),
            )
            info = {"stage": si, "epoch": epoch, "history": history, "best": best, "seconds": time.time() - t_start}
            save_train_state(out / "last", optimizer, info)
    summary = {
        "method": cfg.method,
        "student": student.name,
        "best": best,
        "out_dir": str(out),
        "wall_seconds": round(time.time() - t_start, 1),  # summed over resumed sessions
        "stages": len(cfg.stages),
        "total_steps": step_global,
        "params": student.num_params(),
        "train_images": len(train_ds),  # with their MOS (labelled.label_fraction of what val leaves)
        "val_images": len(val_ds),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
