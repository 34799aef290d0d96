"""The one training loop: ``kdiqa train``, ``kdiqa distill`` and ``kdiqa pretext`` all run here.

A run is a list of :class:`Stage` s (supervised training has one; a distillation run one per stage
of its recipe). Each stage gets a fresh AdamW and its own LR schedule — linear warm-up, then cosine
to 0 (torch's ``LinearLR`` + ``CosineAnnealingLR``) — and trains ``epochs`` epochs of ``steps``
optimizer steps. After every epoch the loop validates, logs a record (stdout and
``history.jsonl``) and checkpoints:

- ``out/last``: the model, any other learnable state (adapters, auxiliary heads:
  ``extra.safetensors``), the optimizer moments, the position (``train_state.*``) and the random
  state, swapped in whole (:func:`recover_last`), so a run killed at any moment (even ``kill -9``)
  resumes from its last finished epoch and continues as the uninterrupted run would have;
- ``out/best``: the model with the best validation SRCC (or the lowest training loss without a
  validation split);
- ``out/snapshots/s<stage>e<epoch>``: with ``snapshots``, the model of every epoch (for curves);
- ``out/ema``: the weight EMA (timm's ``ModelEmaV3``) when ``ema_decay`` is set; it is then what
  is validated and kept as ``best``, and the raw weights' figures are logged as ``raw_val_*``.

Under torchrun (:mod:`kdiqa.distributed`) the loss module runs inside ``DistributedDataParallel`` (the
frozen teacher is left out of it), each process trains on its share
of every global batch, and rank 0 alone validates, logs and writes checkpoints; the others wait at a
barrier. Each process's random state is saved, so a resumed run continues every process's stream.
``accum_steps`` splits each process's share into micro-batches (gradients accumulate, one optimizer step
per global batch), and ``amp`` runs the forward pass under ``torch.autocast`` (bf16, or fp16 with a
``GradScaler``).

A run folder records its config and is never resumed under another recipe (:mod:`kdiqa.runs`).

What a recipe trains is given by a loss function ``(batch, kind, step) → named losses`` (``"loss"``
their sum, what is minimised): the distillation methods' ``Distiller.forward_train`` (the MOS-only
control ``none`` being supervised training), or the pretext task's losses.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from timm.utils import ModelEmaV3
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR
from tqdm import tqdm

from . import distributed
from .checkpoint import atomic_save_tensors, atomic_write_text, load_train_state, save_model, save_train_state
from .models.iqa import IQAModel
from .runs import recover_last, snapshot_folder

LossFn = Callable[[dict, str, int], dict[str, torch.Tensor]]


@dataclass
class Stage:
    """One stage of a run: its data, schedule and objective kind."""

    name: str  # shown in the progress bar
    kind: str  # passed to the loss function ("task", "soft", "joint", "pretext")
    epochs: int
    steps: int  # optimizer steps per epoch: the schedule's unit (an epoch whose loader runs out early skips the rest)
    batches: Callable[[int], Iterable[dict]]  # epoch → that epoch's batches (seeded per epoch: exact resume)
    param_groups: Callable[[], list[dict]]  # fresh AdamW parameter groups ("params", "lr", "weight_decay")
    warmup: int = 0  # linear warm-up steps (from lr / warmup), then cosine to 0 at the stage's end
    grad_clip: float | None = None
    batch_size: int | None = None  # given: progress is counted in views (views/s, ETA) and the record has train_views


@dataclass
class Run:
    """What a run trains and where it writes."""

    out: Path
    model: IQAModel  # what is saved to best/last/ema and validated
    module: nn.Module  # everything the loss function runs (the model, adapters, a frozen teacher, heads)
    loss_fn: LossFn
    device: torch.device
    validate: Callable[[IQAModel], dict[str, float]] | None = None  # → {"val_srcc": ..., ...}
    frozen: list[str] = field(default_factory=list)  # model parameter prefixes kept in eval mode (frozen BN)
    extra_state: list[str] = field(default_factory=list)  # prefixes of ``module``'s state saved beside the model
    ema_decay: float | None = None
    channels_last: bool = False
    meta: dict[str, Any] = field(default_factory=dict)  # recorded in every checkpoint's config.json
    resume: bool = True
    progress: bool = True
    snapshots: bool = False  # keep the model after every epoch in out/snapshots/s<stage>e<epoch>
    accum_steps: int = 1  # micro-batches per optimizer step (each process's share of a batch is split)
    amp: str = "none"  # none | bf16 | fp16: autocast of the forward pass (fp16 with a GradScaler)
    sync_bn: bool = False  # under torchrun: BatchNorm statistics over the global batch (SyncBatchNorm, CUDA)


def warmup_cosine(optimizer: torch.optim.Optimizer, total: int, warmup: int) -> LRScheduler:
    """Linear warm-up from ``lr / warmup`` to ``lr`` over ``warmup`` steps, then cosine to 0 at ``total``.

    Example:
        >>> p = torch.nn.Parameter(torch.zeros(1))
        >>> opt = torch.optim.AdamW([p], lr=1.0)
        >>> sched, lrs = warmup_cosine(opt, total=100, warmup=10), []
        >>> for _ in range(100):
        ...     lrs.append(opt.param_groups[0]["lr"])
        ...     opt.step()
        ...     sched.step()
        >>> [round(lrs[i], 4) for i in (0, 9, 10, 55, 99)]
        [0.1, 1.0, 1.0, 0.5, 0.0003]
    """
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, total - warmup), eta_min=0.0)
    if warmup <= 0:
        return cosine
    linear = LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0, total_iters=max(1, warmup - 1))
    return SequentialLR(optimizer, [linear, cosine], milestones=[warmup])


def _advance(scheduler: LRScheduler, n: int) -> None:
    """Moves a schedule ``n`` steps on without training (resuming, or an epoch that ran out of batches)."""
    with warnings.catch_warnings():  # torch warns when a scheduler steps before the optimizer ever has
        warnings.filterwarnings("ignore", message=".*lr_scheduler.step\\(\\).*", category=UserWarning)
        for _ in range(n):
            scheduler.step()


def _under(name: str, prefixes: list[str]) -> bool:
    """``name`` is one of the dotted ``prefixes`` or inside one (``blocks.1`` does not cover ``blocks.10``)."""
    return any(name == pre or name.startswith(pre.rstrip(".") + ".") for pre in prefixes)


def freeze_prefixes(model: nn.Module, prefixes: list[str]) -> list[str]:
    """Stops gradients of the parameters under ``prefixes``; returns their names."""
    frozen = []
    for name, p in model.named_parameters():
        if _under(name, prefixes):
            p.requires_grad_(False)
            frozen.append(name)
    if prefixes and not frozen:
        raise ValueError(f"freeze prefixes {prefixes} match no parameter")
    return frozen


def train_except_frozen(model: nn.Module, prefixes: list[str]) -> None:
    """Train mode, except modules under frozen prefixes (their BatchNorm statistics stay fixed)."""
    model.train()
    for name, module in model.named_modules():
        if name and _under(name, prefixes):
            module.eval()


class _State:
    """Where a run stands: finished epochs, history, best, and the wall time of earlier processes."""

    def __init__(self, run: Run) -> None:
        self.history: list[dict] = []
        self.best: dict = {"srcc": -2.0, "stage": -1, "epoch": -1}
        self.start = (0, 0)  # (stage, epoch) of the first epoch still to train
        self.seconds = 0.0
        self.resumed = False
        self.own_rng = False  # this process's random state was restored (rank 0's is, in any resumed run)
        last = run.out / "last"
        if run.resume and (last / "train_state.json").is_file():
            self._load(run, last)

    def _load(self, run: Run, last: Path) -> None:
        info = json.loads((last / "train_state.json").read_text())
        self.history, self.best, self.seconds = info["history"], info["best"], info.get("seconds", 0.0)
        self.start = (info.get("stage", 0), info["epoch"] + 1)
        if (last / "extra.safetensors").is_file() or not (last / "distiller.safetensors").is_file():
            run.model.load_state_dict(load_file(str(last / "model.safetensors"), device=str(run.device)))
            if (last / "extra.safetensors").is_file():
                run.module.load_state_dict(load_file(str(last / "extra.safetensors"), device=str(run.device)), False)
        else:  # a run folder written before extra.safetensors: the student and adapters in one file
            run.module.load_state_dict(load_file(str(last / "distiller.safetensors"), device=str(run.device)), False)
        if (last / "rng.safetensors").is_file():  # the random stream continues where the killed run stopped
            states, rank = load_file(str(last / "rng.safetensors")), distributed.info().rank
            key = f"torch_rank{rank}" if rank else "torch"  # each process its own stream
            self.own_rng = key in states
            torch.set_rng_state(states.get(key, states["torch"]))
        self.resumed = True
        if distributed.is_main():
            print(f"resumed from {last} at stage {self.start[0]}, epoch {self.start[1]}")


def _extra_tensors(run: Run) -> dict[str, torch.Tensor]:
    return {k: v for k, v in run.module.state_dict().items() if _under(k, run.extra_state)}


IMAGE_KEYS = frozenset({"image", "degraded", "mos_image", "mos_degraded"})  # input images (NHWC under channels_last)


def _step_losses(run: Run, step_fn: nn.Module, batch: dict, kind: str, step: int, scaler) -> dict[str, float]:
    """Forward and backward of one batch (in micro-batches); returns its mean losses."""
    out: dict[str, float] = {}
    parts = distributed.micro_batches(batch, run.accum_steps)
    dtype = distributed.AMP_DTYPES.get(run.amp, torch.bfloat16)
    for j, (part, share) in enumerate(parts):
        last = j == len(parts) - 1
        sync = step_fn.no_sync() if isinstance(step_fn, DistributedDataParallel) and not last else nullcontext()
        with sync:
            with torch.autocast(run.device.type, dtype, enabled=run.amp != "none"):
                losses = step_fn(part, kind, step)
            scaler.scale(losses["loss"].float() * share).backward()
        for k, v in losses.items():
            out[k] = out.get(k, 0.0) + float(v.detach()) * share
    return out


def _run_epoch(
    run: Run, stage: Stage, si: int, epoch: int, optimizer, scheduler, ema, step0: int, step_fn, scaler
) -> dict:
    """One epoch of ``stage``: returns the record (mean losses per step over every process, seconds)."""
    run.module.train()
    train_except_frozen(run.model, run.frozen)
    t0, sums, done = time.time(), {}, 0
    desc = f"{stage.name} epoch {epoch + 1}/{stage.epochs}"
    per, unit = (stage.batch_size, "view") if stage.batch_size else (1, "step")
    show = run.progress and distributed.is_main()
    bar = tqdm(total=stage.steps * per, desc=desc, disable=not show, unit=unit, dynamic_ncols=True)
    for i, batch in enumerate(stage.batches(epoch)):
        if i >= stage.steps:
            break
        batch = {k: v.to(run.device, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}
        if run.channels_last:
            for k in IMAGE_KEYS.intersection(batch):
                batch[k] = batch[k].contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        losses = _step_losses(run, step_fn, batch, stage.kind, step0 + i, scaler)
        if stage.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), stage.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if ema is not None:
            ema.update(run.model, step=step0 + i)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v
        done += 1
        bar.update(per)
        bar.set_postfix(loss=f"{sums['loss'] / done:.4f}")
    bar.close()
    if done == 0:
        raise ValueError(f"{stage.name}: the data made no batch")
    _advance(scheduler, stage.steps - done)  # keep the schedule on its step grid
    record = {"stage": si, "kind": stage.kind, "epoch": epoch, "train_seconds": round(time.time() - t0, 1)}
    if stage.batch_size:
        record["train_views"] = done * stage.batch_size
    means = distributed.mean_over_processes({f"train_{k}": v / done for k, v in sums.items()}, run.device)
    return record | means


def _validate(run: Run, ema, record: dict) -> None:
    if run.validate is None or not distributed.is_main():  # rank 0 validates; the others wait at its checkpoint
        return
    record.update(run.validate(ema.module if ema is not None else run.model))
    if ema is not None:
        record.update({f"raw_{k}": v for k, v in run.validate(run.model).items()})


def _checkpoint(run: Run, state: _State, record: dict, optimizer, ema, t_start: float) -> None:
    """best/ (if improved) and ema/, then a complete new last/ swapped in whole (see :func:`recover_last`).

    Rank 0 writes, with every process's random state; the other processes wait until it has.
    """
    rng = distributed.gather(torch.get_rng_state())
    if distributed.is_main():
        _write_checkpoint(run, state, record, optimizer, ema, t_start, rng)
    distributed.barrier()


def _write_checkpoint(run: Run, state: _State, record: dict, optimizer, ema, t_start: float, rng: list) -> None:
    si, epoch = record["stage"], record["epoch"]
    extra = {**run.meta, "stage": si, "epoch": epoch, "metrics": record}
    score = record["val_srcc"] if "val_srcc" in record else -record["train_loss"]
    kept = ema.module if ema is not None else run.model
    if score > state.best["srcc"]:
        state.best = {"srcc": score, "stage": si, "epoch": epoch}
        save_model(kept, run.out / "best", extra)
    if ema is not None:
        save_model(ema.module, run.out / "ema", extra)
    if run.snapshots:
        save_model(kept, snapshot_folder(run.out, si, epoch), extra)
    partial = run.out / "last.partial"
    if partial.exists():
        shutil.rmtree(partial)
    save_model(run.model, partial, extra)
    if run.extra_state:
        atomic_save_tensors(_extra_tensors(run), partial / "extra.safetensors")
    if ema is not None:
        atomic_save_tensors(ema.module.state_dict(), partial / "ema.safetensors")
    states = {"torch": rng[0], **{f"torch_rank{r}": t for r, t in enumerate(rng) if r}}
    atomic_save_tensors(states, partial / "rng.safetensors")
    info = {"stage": si, "epoch": epoch, "history": state.history, "best": state.best}
    save_train_state(partial, optimizer, info | {"seconds": state.seconds + time.time() - t_start})  # written last
    last, old = run.out / "last", run.out / "last.old"
    if last.exists():
        os.replace(last, old)
    os.replace(partial, last)
    if old.exists():
        shutil.rmtree(old)
    atomic_write_text(run.out / "history.jsonl", "".join(json.dumps(r) + "\n" for r in state.history))


def train(run: Run, stages: list[Stage]) -> dict:
    """Trains every stage (resuming from ``run.out/last`` when it holds this run); returns a summary.

    The summary: ``history`` (one record per epoch), ``best`` (``srcc``, ``stage``, ``epoch``),
    ``steps`` (optimizer steps of the whole run), ``seconds`` (wall time, summed over resumed
    processes), ``resumed``.
    """
    t_start = time.time()
    if distributed.is_main():
        run.out.mkdir(parents=True, exist_ok=True)
        recover_last(run.out)
    distributed.barrier()
    state = _State(run)
    if run.ema_decay is not None and not 0.0 < run.ema_decay < 1.0:
        raise ValueError(f"optim.ema_decay must be in (0, 1), got {run.ema_decay}")
    ema = ModelEmaV3(run.model, decay=run.ema_decay, use_warmup=True) if run.ema_decay else None
    if ema is not None and state.resumed:
        saved = [
            p for p in (run.out / "last" / "ema.safetensors", run.out / "ema" / "model.safetensors") if p.is_file()
        ]
        if not saved:
            raise ValueError(f"cannot resume {run.out} with optim.ema_decay: it has no ema/ checkpoint")
        ema.module.load_state_dict(load_file(str(saved[0]), device=str(run.device)))
    step_fn, scaler = distributed.wrap_loss(
        run.module, run.loss_fn, run.model, run.device, run.accum_steps, run.amp, run.sync_bn, state.own_rng
    )
    step0 = 0
    for si, stage in enumerate(stages):
        if si < state.start[0]:  # finished in an earlier process
            step0 += stage.epochs * stage.steps
            continue
        optimizer = torch.optim.AdamW(stage.param_groups())
        first = min(state.start[1], stage.epochs) if si == state.start[0] else 0
        if 0 < first < stage.epochs:  # resuming inside this stage: its optimizer moments, then its schedule
            base = [group["lr"] for group in optimizer.param_groups]
            load_train_state(run.out / "last", optimizer)
            for group, lr in zip(optimizer.param_groups, base, strict=True):
                group["lr"] = lr  # the schedule is rebuilt from the base rate and moved on to this epoch
                group.pop("initial_lr", None)
        scheduler = warmup_cosine(optimizer, stage.epochs * stage.steps, stage.warmup)
        _advance(scheduler, first * stage.steps)
        step0 += first * stage.steps
        for epoch in range(first, stage.epochs):
            record = _run_epoch(run, stage, si, epoch, optimizer, scheduler, ema, step0, step_fn, scaler)
            step0 += stage.steps
            _validate(run, ema, record)
            state.history.append(record)
            if distributed.is_main():
                print(json.dumps(record))
            _checkpoint(run, state, record, optimizer, ema, t_start)
    return {
        "history": state.history,
        "best": state.best,
        "steps": step0,
        "seconds": round(state.seconds + time.time() - t_start, 1),
        "resumed": state.resumed,
    }


def steps_for(n_batches: int, steps: int | None) -> int:
    """Steps of an epoch: ``steps`` when given, else one pass (``n_batches``); errors when there is no batch."""
    if n_batches <= 0:
        raise ValueError("the data makes no batch: fewer items than the batch size")
    return steps or n_batches


def passes_for(steps: int, per_pass: int) -> int:
    """Passes over the data an epoch of ``steps`` steps needs (each pass freshly shuffled)."""
    return max(1, math.ceil(steps / per_pass))
