"""Supervised IQA training (``kdiqa train``): the recipe, read top to bottom.

config → dataset (+ a validation split carved from train) → model (+ frozen prefixes) → the
distillation method ``none`` (MOS only, no teacher) with this config's losses → one stage of the
trainer (:mod:`kdiqa.trainer`: AdamW with warm-up + cosine, optional weight EMA, per-epoch
validation and checkpoints, resume) → best checkpoint by validation SRCC. ``out_dir/last`` holds
everything needed to resume; ``out_dir/best`` the best model. With ``optim.ema_decay`` the EMA
weights are what is validated and kept as ``best``, ``out_dir/ema`` holds them after the latest
epoch, and the raw weights' validation figures are logged beside them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from . import distributed
from .checkpoint import load_model
from .data.datasets import IQADataset, TorchIQADataset, get_dataset
from .data.transforms import TrainTransform
from .distill.base import DistillConfig, build_distiller
from .evaluation import predict_paths
from .metrics import plcc, srcc
from .models.iqa import IQAModel
from .models.zoo import create_model
from .runs import prepare_run
from .runtime.preprocess import PreprocessConfig
from .trainer import Run, Stage, freeze_prefixes, train, train_except_frozen

__all__ = ["TrainConfig", "fit", "freeze_prefixes", "labelled_splits", "prepare_run", "train_except_frozen"]


@dataclass
class ModelSection:
    name: str = "iqa_effnet_lite2"
    pretrained: str = "imagenet"  # none | imagenet | hub
    init: str | None = None  # start from this checkpoint folder instead (fine-tuning a trained model)
    freeze: list[str] = field(default_factory=list)  # parameter-name prefixes kept frozen (BN in eval)
    head_hidden: int = 256
    head_dropout: float = 0.1
    head_levels: list[int] = field(default_factory=list)  # stages mean+std pooled into the head (MLSP-style)


@dataclass
class DataSection:
    dataset: str = "clive"  # adapter name or csv:PATH
    root: str | None = None
    split_index: int = 0
    split_seed: int = 0
    val_fraction: float = 0.15
    val_seed: int = 0  # which images form the validation split (kept fixed across training seeds)
    crop: int = 384
    resize: int | None = None
    batch_size: int = 16
    workers: int = 1
    repeat: int = 1  # passes over the training set per epoch
    label_fraction: float = 1.0  # < 1: train on the MOS of this share of train only (label-scarce runs)
    label_seed: int = 0  # which train images keep their MOS (nested across fractions)


@dataclass
class OptimSection:
    epochs: int = 10
    lr: float = 3e-4
    backbone_lr_mult: float = 0.5
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    grad_clip: float | None = 5.0
    accum_steps: int = 1  # micro-batches per optimizer step: the same batch in less memory
    ema_decay: float | None = None  # exponential moving average of the weights (timm's ModelEmaV3, with warm-up)


@dataclass
class LossSection:
    l1: float = 1.0
    mse: float = 0.0
    plcc: float = 0.0
    rank: float = 0.0


@dataclass
class EvalSection:
    mode: str = "full"  # validation/test-time views: full | center | crops
    crop: int = 384
    n_crops: int = 5
    batch_size: int = 8


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossSection = field(default_factory=LossSection)
    eval: EvalSection = field(default_factory=EvalSection)
    out_dir: str = "runs/train"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:i (under torchrun, cuda = this process's GPU)
    threads: int | None = None
    amp: str = "none"  # none | bf16 | fp16: mixed precision of the forward pass (fp16 with a GradScaler)
    sync_bn: bool = False  # under torchrun on GPUs: BatchNorm statistics over the global batch
    channels_last: bool = True
    resume: bool = True
    snapshots: bool = False  # also keep the model of every epoch (out_dir/snapshots/s<stage>e<epoch>): curves
    max_steps_per_epoch: int | None = None  # for smoke tests


def _param_groups(model, lr: float, backbone_mult: float, wd: float) -> list[dict]:
    """AdamW groups: the backbone at ``lr × backbone_mult``; biases and norms without weight decay."""
    groups: dict[tuple, list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_backbone = name.startswith("backbone.")
        no_decay = p.ndim <= 1
        groups.setdefault((is_backbone, no_decay), []).append(p)
    return [
        {"params": ps, "lr": lr * (backbone_mult if bb else 1.0), "weight_decay": 0.0 if nd else wd}
        for (bb, nd), ps in groups.items()
    ]


def labelled_splits(data: DataSection) -> tuple[IQADataset, IQADataset, IQADataset | None]:
    """The dataset, the rows trained on and the validation rows (``None`` when ``val_fraction`` is 0).

    The validation split is carved out of train (never out of test) before ``label_fraction`` takes
    its share of the rest, so validation is the same at every label fraction.
    """
    ds = get_dataset(data.dataset, data.root, split_index=data.split_index, seed=data.split_seed)
    ds = ds.carve(data.val_fraction, data.val_seed, data.label_fraction, data.label_seed)
    return ds, ds.subset("train"), ds.subset("val") if data.val_fraction > 0 else None


def _build_model(cfg: TrainConfig, ds: IQADataset, device: torch.device) -> IQAModel:
    """The model of ``cfg.model`` on ``ds``'s scale, optionally started from a checkpoint, with its frozen prefixes."""
    model = create_model(
        cfg.model.name,
        pretrained=cfg.model.pretrained,
        head_hidden=cfg.model.head_hidden,
        head_dropout=cfg.model.head_dropout,
        head_levels=tuple(cfg.model.head_levels),
        score_range=ds.score_range,
        higher_better=ds.higher_better,
        eval_mode=cfg.eval.mode,
        eval_crop=cfg.eval.crop,
        eval_n_crops=cfg.eval.n_crops,
    ).to(device)
    if cfg.model.init:
        start = load_model(cfg.model.init)
        if start.cfg.arch != model.cfg.arch:
            raise ValueError(f"model.init {cfg.model.init} is a {start.cfg.arch}, not a {model.cfg.arch}")
        if tuple(start.cfg.head_levels) != tuple(model.cfg.head_levels):
            raise ValueError(
                f"model.init {cfg.model.init} has head_levels {list(start.cfg.head_levels)}, "
                f"the config asks for {list(model.cfg.head_levels)}"
            )
        model.load_state_dict(start.state_dict())
    freeze_prefixes(model, cfg.model.freeze)
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model


def fit(cfg: TrainConfig, progress: bool = True) -> dict:
    """Trains one model; returns a summary (best epoch, validation metrics, paths, wall time)."""
    device, out = prepare_run(cfg, "train_config.json")
    ds, train_ds, val_ds = labelled_splits(cfg.data)
    train_set = TorchIQADataset(train_ds, TrainTransform(cfg.data.crop, cfg.data.resize), cfg.data.repeat)
    views = PreprocessConfig(mode=cfg.eval.mode, crop=cfg.eval.crop, n_crops=cfg.eval.n_crops, resize=cfg.data.resize)
    model = _build_model(cfg, ds, device)
    method = build_distiller("none", model, None, DistillConfig(task_loss=asdict(cfg.loss)))

    def batches(epoch: int) -> DataLoader:
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)  # epoch-exact resume; the same in every process
        order = BatchSampler(RandomSampler(train_set, generator=g), cfg.data.batch_size, drop_last=True)
        return DataLoader(
            train_set,
            batch_sampler=distributed.shard(order),  # under torchrun: this process's share of each batch
            num_workers=cfg.data.workers,
            generator=g,
            pin_memory=device.type == "cuda",
        )

    def validate(net: IQAModel) -> dict[str, float]:
        # Signed, against MOS normalised to higher = better: an anti-correlated model must not win.
        z = predict_paths(
            net, [r.path for r in val_ds.rows], views, cfg.eval.batch_size, channels_last=cfg.channels_last
        )
        target = val_ds.normalize(val_ds.mos_array())
        return {"val_srcc": srcc(z, target), "val_plcc": plcc(z, target)}

    steps = math.ceil(len(train_set) / cfg.data.batch_size)  # the schedule's grid (the loader drops a last part batch)
    steps = min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps
    stage = Stage(
        name="train",
        kind="task",
        epochs=cfg.optim.epochs,
        steps=steps,
        batches=batches,
        param_groups=lambda: _param_groups(model, cfg.optim.lr, cfg.optim.backbone_lr_mult, cfg.optim.weight_decay),
        warmup=int(cfg.optim.warmup_epochs * steps),
        grad_clip=cfg.optim.grad_clip,
    )
    validated = val_ds is not None and len(val_ds) >= 3
    run = Run(
        out=out,
        model=model,
        module=method,
        loss_fn=lambda batch, kind, step: method.forward_train(batch, kind, step)[1],
        device=device,
        validate=validate if validated else None,
        frozen=cfg.model.freeze,
        ema_decay=cfg.optim.ema_decay,
        channels_last=cfg.channels_last,
        accum_steps=cfg.optim.accum_steps,
        amp=cfg.amp,
        sync_bn=cfg.sync_bn,
        meta={"train_config": asdict(cfg), "dataset": ds.name},
        resume=cfg.resume,
        snapshots=cfg.snapshots,
        progress=progress,
    )
    result = train(run, [stage])
    summary = {
        "best_epoch": result["best"]["epoch"],
        "best_by": "val_srcc" if validated else "lowest train_loss (no validation split)",
        "best_val_srcc": result["best"]["srcc"] if validated else None,
        "epochs": cfg.optim.epochs,
        "frozen_params": sum(not p.requires_grad for p in model.parameters()),
        "train_images": len(train_ds),
        "val_images": len(val_ds) if val_ds is not None else 0,
        "out_dir": str(out),
        "final": str(out / ("ema" if cfg.optim.ema_decay else "last")),
        "wall_seconds": result["seconds"],
        "device": str(device),
    }
    if distributed.is_main():
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
