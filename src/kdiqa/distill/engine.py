"""Multi-stage distillation runs (``kdiqa distill --config FILE``): the recipe, read top to bottom.

A run is a list of stages, each one of the Distiller's stages (``soft``: teacher labels on the
unlabelled pool, ``joint``: MOS + teacher, ``task``: MOS only) on its data (``pool``, ``labelled`` or
``both``) for some epochs. Each becomes a stage of the one trainer (:mod:`kdiqa.trainer`): a fresh
AdamW, warm-up over half an epoch then cosine, a checkpoint after every epoch (resumable), and the
student with the best validation SRCC (on the val split carved from the labelled train set) in
``out_dir/best``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.utils.data import BatchSampler, ConcatDataset, DataLoader

from .. import distributed
from ..data.datasets import TorchIQADataset
from ..data.degrade import WithDegraded
from ..data.pools import PoolConfig
from ..data.transforms import TrainTransform
from ..engine import DataSection, EvalSection, labelled_splits
from ..evaluation import predict_paths
from ..hub import load, resolve_folder
from ..metrics import srcc
from ..models.iqa import IQAModel
from ..models.zoo import create_model
from ..runs import prepare_run
from ..runtime.preprocess import PreprocessConfig
from ..trainer import Run, Stage, freeze_prefixes, passes_for, steps_for, train
from .base import DistillConfig, Distiller, build_distiller
from .cache import CacheSection
from .data import (
    GroupedBatches,
    PairedBatches,
    PoolCrops,
    ViewsWithMOS,
    cached_data,
    matching_images,
    pool_items,
    soft_label_pool,
)
from .match_cache import MatchCache, stream_fingerprint
from .matching import MatchingViews, MatchSection


@dataclass
class StageSection:
    stage: str = "joint"  # soft | joint | task
    data: str = "labelled"  # pool | labelled | both | views (fresh function-matching views of the pool's images)
    epochs: int = 1  # with `views`: the checkpoints (validation rounds) over them, fixed once the run started
    lr: float = 1e-3
    steps_per_epoch: int | None = None  # exact steps (more than a pass: further shuffled passes); None: one pass
    views: int | None = None  # data: views — the stage's length in views (never repeated), split over its epochs


@dataclass
class DistillRunConfig:
    method: str = "response"
    student: str = "iqa_mobilenetv3_small_050"
    student_pretrained: str = "none"
    student_init: str | None = None  # checkpoint folder to start from (e.g. a pretext run)
    student_head_levels: list[int] = field(default_factory=list)  # stages mean+std pooled into its head
    student_freeze: list[str] = field(default_factory=list)  # parameter prefixes kept frozen (BN in eval), as in train
    student_input_pool: int = 1  # the student sees its input average-pooled by this factor (ModelConfig.input_pool)
    teacher: str = "teacher"
    distill: DistillConfig = field(default_factory=DistillConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    labelled: DataSection = field(default_factory=DataSection)
    stages: list[StageSection] = field(default_factory=lambda: [StageSection()])
    eval: EvalSection = field(default_factory=lambda: EvalSection(mode="full"))
    cache: CacheSection = field(default_factory=CacheSection)  # teacher targets computed once (cache.py)
    matching: MatchSection = field(default_factory=MatchSection)  # how `data: views` stages draw their views
    soft_labels: str | None = None  # a `kdiqa pseudo-label` file of this pool and teacher: pool targets from it
    weight_decay: float = 0.01
    out_dir: str = "runs/distill"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:i (under torchrun, cuda = this process's GPU)
    threads: int | None = None
    amp: str = "none"  # none | bf16 | fp16: mixed precision of the forward passes (fp16 with a GradScaler)
    sync_bn: bool = False  # under torchrun on GPUs: the student's BatchNorm statistics over the global batch
    accum_steps: int = 1  # micro-batches per optimizer step: the same batch in less memory
    resume: bool = True
    snapshots: bool = False  # also keep the model of every epoch (out_dir/snapshots/s<stage>e<epoch>): curves
    channels_last: bool = True  # NHWC memory for teacher, student and inputs (faster convolutions on CPUs)


def _datasets(cfg: DistillRunConfig, teacher: IQAModel, train_ds, val_ds, progress: bool) -> dict:
    """Every data source a stage may name: ``labelled``, ``pool``, ``both`` (+ ``*_cached`` with a cache)."""
    lab = cfg.labelled
    tf = TrainTransform(lab.crop, lab.resize)
    needs_pool = any(s.data in ("pool", "both") for s in cfg.stages)
    if cfg.soft_labels and cfg.cache.enabled:
        raise ValueError("soft_labels and cache.enabled are two sources of pool targets: choose one")
    if cfg.soft_labels and needs_pool and cfg.method in ("hints", "review"):
        raise ValueError(f"soft_labels hold scores only; {cfg.method} needs the teacher's maps (cache or online)")
    pool = None
    if needs_pool:
        if cfg.soft_labels and cfg.method != "none":
            pool = soft_label_pool(cfg, resolve_folder(cfg.teacher), val_ds, tf)
        else:
            pool = PoolCrops(pool_items(cfg, val_ds), tf)
    labelled = TorchIQADataset(train_ds, tf, lab.repeat)
    data = {"labelled": labelled, "pool": pool, "both": ConcatDataset([labelled, pool]) if pool else None}
    data["views"] = matching_images(cfg, val_ds) if any(s.data == "views" for s in cfg.stages) else None
    if cfg.cache.enabled and cfg.method != "none":  # the MOS-only control never needs the teacher
        data.update(cached_data(cfg, teacher, train_ds, val_ds, needs_pool, progress))
    if cfg.distill.degrade_weight:  # labelled crops carry a degraded copy (`both` keeps plain items)
        for key in ("labelled", "labelled_cached"):
            if data.get(key) is not None:
                data[key] = WithDegraded(data[key], levels=cfg.distill.degrade_levels)
    return data


def _student(cfg: DistillRunConfig, ds, device: torch.device) -> IQAModel:
    if not cfg.student_init:
        return create_model(
            cfg.student,
            pretrained=cfg.student_pretrained,
            head_levels=tuple(cfg.student_head_levels),
            input_pool=cfg.student_input_pool,
            score_range=ds.score_range,
            higher_better=ds.higher_better,
            eval_mode=cfg.eval.mode,
            eval_crop=cfg.eval.crop,
        )
    student = load(cfg.student_init, device=str(device))
    # a pre-trained checkpoint (e.g. a pretext run) reports on this run's scale and views
    student.cfg.score_range, student.cfg.higher_better = tuple(ds.score_range), ds.higher_better
    student.cfg.eval_mode, student.cfg.eval_crop = cfg.eval.mode, cfg.eval.crop
    return student


def _stages(cfg: DistillRunConfig, data: dict, distiller: Distiller) -> list[Stage]:
    """One trainer stage per configured stage, on its data source, with its own AdamW and schedule."""
    stages, bs = [], cfg.labelled.batch_size
    pin = distiller.student_device().type == "cuda"
    for si, st in enumerate(cfg.stages):
        if st.data == "views" and cfg.method != "none":
            stages.append(_views_stage(cfg, si, data["views"], distiller, data["labelled"]))
            continue
        if cfg.method == "none":  # the control learns from MOS only: labelled data in every stage
            source = "labelled"
        else:
            source = f"{st.data}_cached" if st.stage != "task" and f"{st.data}_cached" in data else st.data
        if data[source] is None or len(data[source]) == 0:
            raise ValueError(f"stage {si}: no {st.data!r} data (is the pool configured?)")
        per_pass = len(GroupedBatches(data[source], bs, torch.Generator()))  # full batches per pass
        if per_pass == 0:
            raise ValueError(f"stage {si}: {len(data[source])} {st.data!r} items make no batch of {bs}")
        steps = steps_for(per_pass, st.steps_per_epoch)

        def batches(epoch: int, si=si, source=source, steps=steps, per_pass=per_pass) -> DataLoader:
            g = torch.Generator().manual_seed(cfg.seed * 1000 + si * 100 + epoch)
            sampler = GroupedBatches(data[source], bs, g, passes=passes_for(steps, per_pass))
            return DataLoader(
                data[source], batch_sampler=distributed.shard(sampler), num_workers=cfg.labelled.workers, pin_memory=pin
            )

        def groups(lr: float = st.lr) -> list[dict]:
            return [{"params": distiller.learnable_parameters(), "lr": lr, "weight_decay": cfg.weight_decay}]

        name = f"{cfg.method} stage {si + 1} ({st.stage})"
        stages.append(Stage(name, st.stage, st.epochs, steps, batches, groups, warmup=steps // 2))
    return stages


def stage_views(cfg: DistillRunConfig, si: int, images: list[str]) -> tuple[MatchingViews, int]:
    """Stage ``si``'s view stream (its seed: ``matching.seed``, else the run's) and its steps per epoch."""
    st, bs = cfg.stages[si], cfg.labelled.batch_size
    if st.stage not in ("soft", "joint"):
        raise ValueError(f"stage {si}: data 'views' is a soft or joint stage (views + labelled MOS), got {st.stage!r}")
    if not st.views and not st.steps_per_epoch:
        raise ValueError(f"stage {si}: data 'views' needs `views` (the stage's length) or `steps_per_epoch`")
    steps = st.steps_per_epoch or math.ceil(st.views / (st.epochs * bs))
    seed = cfg.seed if cfg.matching.seed is None else cfg.matching.seed
    return MatchingViews(images, cfg.matching, seed, si, length=st.epochs * steps * bs), steps


def _views_stage(cfg: DistillRunConfig, si: int, images: list[str], distiller, labelled) -> Stage:
    """A function-matching stage: ``views`` fresh views, ``epochs`` checkpoints; view ``i`` of epoch ``e`` is
    view ``e × steps × batch + i`` of the stage's stream, so a resumed epoch sees the same views. A ``joint``
    stage pairs each batch of views with a batch of labelled crops: (1 − α)·L(teacher) + α·L(MOS)."""
    st, bs = cfg.stages[si], cfg.labelled.batch_size
    pin = distiller.student_device().type == "cuda"
    views, steps = stage_views(cfg, si, images)
    if cfg.matching.cache:  # the teacher's scores by view index: the teacher does not run
        if cfg.method in ("hints", "review"):
            raise ValueError(f"matching.cache holds scores only; {cfg.method} needs the teacher's maps (online)")
        cache = MatchCache(cfg.matching.cache, stream_fingerprint(distiller.teacher, views))
        views.t_scores = cache.scores(len(views))
        cache.close()

    def batches(epoch: int) -> DataLoader:
        order = BatchSampler(range(epoch * steps * bs, (epoch + 1) * steps * bs), bs, drop_last=True)
        source = views
        if st.stage == "joint":
            source = ViewsWithMOS(views, labelled)
            order = PairedBatches(
                order, labelled, bs, torch.Generator().manual_seed(cfg.seed * 1000 + si * 100 + epoch)
            )
        return DataLoader(
            source, batch_sampler=distributed.shard(order), num_workers=cfg.labelled.workers, pin_memory=pin
        )

    def groups(lr: float = st.lr) -> list[dict]:
        return [{"params": distiller.learnable_parameters(), "lr": lr, "weight_decay": cfg.weight_decay}]

    name = f"{cfg.method} stage {si + 1} (views)"
    return Stage(name, st.stage, st.epochs, steps, batches, groups, warmup=steps // 2, batch_size=bs)


def distill(cfg: DistillRunConfig, progress: bool = True) -> dict:
    """Runs every stage of ``cfg``; returns a summary with the best validation SRCC."""
    lab = cfg.labelled
    if lab.val_fraction <= 0:
        raise ValueError("labelled.val_fraction must be > 0: distill keeps the checkpoint with the best val SRCC")
    device, out = prepare_run(cfg, "distill_config.json")
    ds, train_ds, val_ds = labelled_splits(lab)
    teacher = load(cfg.teacher, device=str(device))
    with distributed.main_first():  # under torchrun, rank 0 builds any teacher cache; the others then read it
        data = _datasets(cfg, teacher, train_ds, val_ds, progress and distributed.is_main())
    student = _student(cfg, ds, device)
    freeze_prefixes(student, cfg.student_freeze)
    distiller = build_distiller(cfg.method, student.to(device), teacher, cfg.distill).to(device)
    if cfg.channels_last:
        distiller.to(memory_format=torch.channels_last)
    views = PreprocessConfig(mode=cfg.eval.mode, crop=cfg.eval.crop, n_crops=cfg.eval.n_crops, resize=lab.resize)

    def validate(net: IQAModel) -> dict[str, float]:
        # in the model's training memory format: validating must not convert it (rank 0 alone validates)
        z = predict_paths(
            net, [r.path for r in val_ds.rows], views, cfg.eval.batch_size, channels_last=cfg.channels_last
        )
        return {"val_srcc": srcc(z, val_ds.normalize(val_ds.mos_array())) if np.ptp(z) > 0 else 0.0}

    run = Run(
        out=out,
        model=student,
        module=distiller,
        loss_fn=lambda batch, kind, step: distiller.forward_train(batch, kind, step)[1],
        device=device,
        validate=validate,
        frozen=cfg.student_freeze,
        extra_state=[n for n, _ in distiller.named_children() if n not in ("student", "teacher")],
        meta={"distill_config": asdict(cfg)},
        resume=cfg.resume,
        snapshots=cfg.snapshots,
        channels_last=cfg.channels_last,
        progress=progress,
        accum_steps=cfg.accum_steps,
        amp=cfg.amp,
        sync_bn=cfg.sync_bn,
    )
    result = train(run, _stages(cfg, data, distiller))
    summary = {
        "method": cfg.method,
        "student": student.name,
        "best": result["best"],
        "out_dir": str(out),
        "wall_seconds": result["seconds"],  # summed over resumed processes
        "stages": len(cfg.stages),
        "total_steps": result["steps"],
        "params": student.num_params(),
        "train_images": len(train_ds),  # with their MOS (labelled.label_fraction of what val leaves)
        "val_images": len(val_ds),
    }
    if distributed.is_main():
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
