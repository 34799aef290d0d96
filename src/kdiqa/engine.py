"""Supervised IQA training (``kdiqa train``): read it top to bottom.

config → dataset (+ a validation split carved from train) → model (+ frozen prefixes) → AdamW with
warm-up + cosine (+ an optional weight EMA) → epochs of (train, validate, checkpoint) → best checkpoint
by validation SRCC. ``out_dir/last`` holds everything needed to resume; ``out_dir/best`` the best model.
With ``optim.ema_decay`` the EMA weights are what is validated and kept as ``best``, ``out_dir/ema``
holds them after the latest epoch, and the raw weights' validation figures are logged beside them.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader
from tqdm import tqdm

from .checkpoint import load_model, load_train_state, save_model, save_train_state
from .data.datasets import IQADataset, TorchIQADataset, get_dataset
from .data.transforms import EvalTransform, TrainTransform
from .evaluation import predict_paths
from .losses import combined_loss
from .metrics import plcc, srcc
from .models.zoo import create_model


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
    device: str = "auto"
    threads: int | None = None
    channels_last: bool = True
    resume: bool = True
    max_steps_per_epoch: int | None = None  # for smoke tests


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _under(name: str, prefixes: list[str]) -> bool:
    """``name`` is one of the dotted ``prefixes`` or inside one (``blocks.1`` does not cover ``blocks.10``)."""
    return any(name == pre or name.startswith(pre.rstrip(".") + ".") for pre in prefixes)


def freeze_prefixes(model: torch.nn.Module, prefixes: list[str]) -> list[str]:
    frozen = []
    for name, p in model.named_parameters():
        if _under(name, prefixes):
            p.requires_grad_(False)
            frozen.append(name)
    if prefixes and not frozen:
        raise ValueError(f"freeze prefixes {prefixes} match no parameter")
    return frozen


def train_except_frozen(model: torch.nn.Module, prefixes: list[str]) -> None:
    """Train mode, except modules under frozen prefixes (their BatchNorm statistics stay fixed)."""
    model.train()
    for name, module in model.named_modules():
        if name and _under(name, prefixes):
            module.eval()


def _param_groups(model, lr: float, backbone_mult: float, wd: float) -> list[dict]:
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


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up then cosine decay to 0."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# Settings that change how fast a run goes or where it lives, never what it learns, plus ``epochs`` (a finished
# run may be resumed to train longer): a run may resume under other values of these.
RUN_ONLY_KEYS = frozenset({"threads", "device", "workers", "resume", "out_dir", "epochs"})


def config_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two recorded configs, ignoring :data:`RUN_ONLY_KEYS`.

    A key in only one of them is a field added to (or dropped from) kdiqa between the two runs, not
    a change of the run's recipe, and is not reported.

    Example:
        >>> config_changes({"optim": {"lr": 1e-3}, "threads": 1}, {"optim": {"lr": 3e-4}, "threads": 2, "new": 0})
        ['optim.lr']
        >>> config_changes({"stages": [{"lr": 1, "epochs": 2}]}, {"stages": [{"lr": 2, "epochs": 3}]})
        ['stages.0.lr']
    """
    changes = []
    for key in sorted(old.keys() & new.keys()):
        if key in RUN_ONLY_KEYS:
            continue
        a, b = old[key], new[key]
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):  # e.g. distill stages: item by item
            a, b = ({str(i): v for i, v in enumerate(x)} for x in (a, b))
        if isinstance(a, dict) and isinstance(b, dict):
            changes += config_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            changes.append(prefix + key)
    return changes


def prepare_run(cfg, config_name: str) -> tuple[torch.device, Path]:
    """Threads, seeds and device from a run config; creates ``cfg.out_dir`` and records the config.

    A run folder that already holds a resumable run of another recipe is refused (resuming would mix
    the two): the error names the keys that differ.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recorded, config = out / config_name, json.loads(json.dumps(asdict(cfg)))  # as recorded: tuples become lists
    if cfg.resume and recorded.is_file() and (out / "last" / "train_state.json").is_file():
        changed = config_changes(json.loads(recorded.read_text()), config)
        if changed:
            raise ValueError(
                f"{out} holds a run of another config (it differs in {', '.join(changed)}); resuming would mix "
                "the two: choose another out_dir, or --set resume=false to start it again"
            )
    recorded.write_text(json.dumps(config, indent=2))
    return resolve_device(cfg.device), out


def labelled_splits(data: DataSection) -> tuple[IQADataset, IQADataset, IQADataset | None]:
    """The dataset, the rows trained on and the validation rows (``None`` when ``val_fraction`` is 0).

    The validation split is carved out of train (never out of test) before ``label_fraction`` takes
    its share of the rest, so validation is the same at every label fraction.
    """
    if not 0 <= data.val_fraction < 1:
        raise ValueError(
            f"val_fraction must be in [0, 1): the share of train carved out for validation, got {data.val_fraction}"
        )
    ds = get_dataset(data.dataset, data.root, split_index=data.split_index, seed=data.split_seed)
    ds = ds.carve_val(data.val_fraction, seed=data.val_seed) if data.val_fraction > 0 else ds
    ds = ds.keep_labels(data.label_fraction, seed=data.label_seed) if data.label_fraction != 1 else ds  # rejects > 1
    return ds, ds.subset("train"), ds.subset("val") if data.val_fraction > 0 else None


def fit(cfg: TrainConfig, progress: bool = True) -> dict:
    """Trains one model; returns a summary (best epoch, validation metrics, paths, wall time)."""
    t_start = time.time()
    device, out = prepare_run(cfg, "train_config.json")

    ds, train_ds, val_ds = labelled_splits(cfg.data)
    train_set = TorchIQADataset(train_ds, TrainTransform(cfg.data.crop, cfg.data.resize), cfg.data.repeat)
    eval_tf = EvalTransform(cfg.eval.mode, cfg.eval.crop, cfg.eval.n_crops, cfg.data.resize)

    # Model.
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
    frozen = freeze_prefixes(model, cfg.model.freeze)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)

    steps_per_epoch = math.ceil(len(train_set) / cfg.data.batch_size)
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    total_steps = steps_per_epoch * cfg.optim.epochs
    optimizer = torch.optim.AdamW(
        _param_groups(model, cfg.optim.lr, cfg.optim.backbone_lr_mult, cfg.optim.weight_decay)
    )
    for g in optimizer.param_groups:
        g["base_lr"] = g["lr"]
    warmup = int(cfg.optim.warmup_epochs * steps_per_epoch)
    if cfg.optim.ema_decay is not None and not 0.0 < cfg.optim.ema_decay < 1.0:
        raise ValueError(f"optim.ema_decay must be in (0, 1), got {cfg.optim.ema_decay}")
    ema = ModelEmaV3(model, decay=cfg.optim.ema_decay, use_warmup=True) if cfg.optim.ema_decay else None

    # Resume from out/last if it exists.
    start_epoch, history, best = 0, [], {"srcc": -2.0, "epoch": -1}
    if cfg.resume and (out / "last" / "train_state.json").is_file():
        state = load_train_state(out / "last", optimizer)
        model.load_state_dict(load_model(out / "last").state_dict())
        start_epoch, history, best = state["epoch"] + 1, state["history"], state["best"]
        if ema is not None:
            if not (out / "ema" / "model.safetensors").is_file():
                raise ValueError(f"cannot resume {out} with optim.ema_decay: it has no ema/ checkpoint")
            ema.module.load_state_dict(load_model(out / "ema").state_dict())
        print(f"resumed from {out / 'last'} at epoch {start_epoch}")

    for epoch in range(start_epoch, cfg.optim.epochs):
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)  # epoch-exact resume
        loader = DataLoader(
            train_set,
            batch_size=cfg.data.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=cfg.data.workers,
            generator=g,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
        )
        train_except_frozen(model, cfg.model.freeze)
        t0, sums, n_seen = time.time(), {}, 0
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", disable=not progress)
        for i, batch in enumerate(loader):
            if i >= steps_per_epoch:
                break
            step = epoch * steps_per_epoch + i
            for grp in optimizer.param_groups:
                grp["lr"] = grp["base_lr"] * lr_factor(step, total_steps, warmup)
            x = batch["image"].to(device, non_blocking=True)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = batch["score"].to(device)
            losses = combined_loss(model(x), y, asdict(cfg.loss))
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if cfg.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            if ema is not None:
                ema.update(model, step=step)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(y)
            n_seen += len(y)
            bar.update(1)
            bar.set_postfix(loss=f"{sums['loss'] / n_seen:.4f}")
        bar.close()
        record = {
            "epoch": epoch,
            "train_seconds": round(time.time() - t0, 1),
            **{f"train_{k}": v / max(1, n_seen) for k, v in sums.items()},
        }

        evaluated = ema.module if ema is not None else model
        if val_ds is not None and len(val_ds) >= 3:
            paths = [r.path for r in val_ds.rows]
            # Signed, against MOS normalised to higher = better: an anti-correlated model must not win.
            target = val_ds.normalize(val_ds.mos_array())
            for prefix, net in [("", evaluated)] + ([("raw_", model)] if ema is not None else []):
                z = predict_paths(net, paths, eval_tf, cfg.eval.batch_size, channels_last=cfg.channels_last)
                record.update({f"{prefix}val_srcc": srcc(z, target), f"{prefix}val_plcc": plcc(z, target)})
        history.append(record)
        print(json.dumps(record))
        with open(out / "history.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

        extra = {"train_config": asdict(cfg), "epoch": epoch, "dataset": ds.name, "metrics": record}
        score = record.get("val_srcc", -float(record.get("train_loss", 0.0)))
        if score > best["srcc"]:
            best = {"srcc": score, "epoch": epoch}
            save_model(evaluated, out / "best", extra)
        if ema is not None:
            save_model(ema.module, out / "ema", extra)
        save_model(model, out / "last", extra)
        save_train_state(out / "last", optimizer, {"epoch": epoch, "history": history, "best": best})

    validated = val_ds is not None and len(val_ds) >= 3
    summary = {
        "best_epoch": best["epoch"],
        "best_by": "val_srcc" if validated else "lowest train_loss (no validation split)",
        "best_val_srcc": best["srcc"] if validated else None,
        "epochs": cfg.optim.epochs,
        "frozen_params": len(frozen),
        "train_images": len(train_ds),
        "val_images": len(val_ds) if val_ds is not None else 0,
        "out_dir": str(out),
        "final": str(out / ("ema" if ema is not None else "last")),
        "wall_seconds": round(time.time() - t_start, 1),
        "device": str(device),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
