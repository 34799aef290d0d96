"""Several processes, one run: torchrun's environment, the process group, and sharding each global batch.

``kdiqa train`` and ``kdiqa distill`` run unchanged under ``torchrun --nproc-per-node N`` (and torchrun's
multi-node rendezvous flags): :func:`setup` reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, opens the process
group (NCCL on CUDA, gloo on CPU) and gives each process its device (``cuda:LOCAL_RANK`` on GPUs).
Without those variables nothing changes: one process, no process group.

**Data.** Every process draws the same global batches (the same per-epoch seed), and process ``r`` of
``w`` keeps items ``r, r + w, r + 2w, …`` of each one (:class:`ShardedBatches`, the batch-level form of
torch's ``DistributedSampler``). A step therefore sees exactly the global batch a single process would
see, so the effective batch and the schedule do not depend on the number of processes, and no item or
function-matching view (each is generated from its own index) is seen twice. Random augmentation draws from
a per-process seed (``seed + 1000 · rank``; rank 0 keeps the run's seed).

Example:
    >>> list(ShardedBatches([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]], rank=1, world=2))
    [[1, 3], [6, 8]]
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

RANK_SEED_STRIDE = 1000  # rank r draws its augmentation from seed + 1000 r


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_info = DistInfo()


def info() -> DistInfo:
    """This process's place in the run (rank 0 of 1 without torchrun)."""
    return _info


def is_main() -> bool:
    return _info.is_main


def env_info() -> DistInfo:
    """The rank, world size and local rank torchrun put in the environment (0, 1, 0 without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` (this process's GPU) or ``cuda:i``.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available here (use --set device=cpu or auto)")
    return device


def setup(device_name: str = "auto") -> tuple[DistInfo, torch.device]:
    """Joins torchrun's process group when there is one; returns this process's place and device."""
    global _info
    env = env_info()
    device = resolve_device(device_name, env.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if env.enabled and not dist.is_initialized():
        minutes = float(os.environ.get("KDIQA_DIST_TIMEOUT_MIN", "60"))  # long teacher passes between barriers
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=minutes))
    _info = env
    return env, device


def teardown() -> None:
    """Leaves the process group (at the end of a command)."""
    global _info
    if dist.is_initialized():
        dist.destroy_process_group()
    _info = DistInfo()


def barrier() -> None:
    if _info.enabled:
        dist.barrier()


@contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. builds a cache), then the others (which find it built)."""
    if not _info.is_main:
        barrier()
    yield
    if _info.is_main:
        barrier()


def rank_seed(seed: int) -> int:
    """The augmentation seed of this process (the run's seed on rank 0)."""
    return seed + RANK_SEED_STRIDE * _info.rank


class ShardedBatches:
    """This process's share of each batch of a batch sampler: items ``rank::world``.

    Global batches smaller than ``world`` would leave a process without data, so they are refused.
    """

    def __init__(self, batches: Iterable[list[int]], rank: int | None = None, world: int | None = None) -> None:
        self.batches = batches
        self.rank = _info.rank if rank is None else rank
        self.world = _info.world if world is None else world

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            batch = list(batch)
            if len(batch) < self.world:
                raise ValueError(f"a batch of {len(batch)} cannot be shared by {self.world} processes")
            yield batch[self.rank :: self.world]

    def __len__(self) -> int:
        return len(self.batches)


def shard(batch_sampler):
    """``batch_sampler`` itself in one process, else this process's :class:`ShardedBatches` of it."""
    return ShardedBatches(batch_sampler) if _info.enabled else batch_sampler


def mean_over_processes(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Each value averaged over the processes (itself in one process)."""
    if not _info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / _info.world for k, v in zip(keys, t.tolist(), strict=True)}


def gather(obj) -> list:
    """Every process's ``obj``, in rank order (``[obj]`` in one process)."""
    if not _info.enabled:
        return [obj]
    out = [None] * _info.world
    dist.all_gather_object(out, obj)
    return out


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class LossModule(nn.Module):
    """The run's loss function as a module's forward, so that DistributedDataParallel can wrap it."""

    def __init__(self, module: nn.Module, loss_fn: Callable) -> None:
        super().__init__()
        self.module, self.loss_fn = module, loss_fn

    def forward(self, batch: dict, kind: str, step: int) -> dict[str, torch.Tensor]:
        return self.loss_fn(batch, kind, step)


def micro_batches(batch: dict, n: int) -> list[tuple[dict, float]]:
    """``batch`` in at most ``n`` micro-batches, each with its share of the items: micro-batch ``j`` holds
    items ``j, j + n, …``, as process ``j`` of ``n`` would, so that one process accumulating ``n`` micro-batches
    and ``n`` processes train alike.

    Example:
        >>> [(p["x"].tolist(), s) for p, s in micro_batches({"x": torch.arange(5)}, 2)]
        [([0, 2, 4], 0.6), ([1, 3], 0.4)]
    """
    size = len(next(iter(batch.values())))
    if n <= 1 or size <= 1:
        return [(batch, 1.0)]
    n = min(n, size)
    return [({k: v[j::n] for k, v in batch.items()}, len(range(j, size, n)) / size) for j in range(n)]


def wrap_loss(module, loss_fn, model, device, accum_steps: int, amp: str, sync_bn: bool, restored: bool):
    """The loss as a module (in ``DistributedDataParallel`` under torchrun) and the run's gradient scaler.

    ``model`` (the student) gets SyncBatchNorm with ``sync_bn``; processes other than rank 0 reseed their
    augmentation streams (:func:`rank_seed`) unless their saved streams were ``restored`` (a resumed run;
    a run started in one process and resumed in several reseeds the new ones).
    """
    if accum_steps < 1:
        raise ValueError(f"accum_steps must be >= 1, got {accum_steps}")
    if amp not in ("none", *AMP_DTYPES):
        raise ValueError(f"amp must be none, bf16 or fp16, got {amp!r}")
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    step_fn = LossModule(module, loss_fn)
    if not _info.enabled:
        if sync_bn:
            raise ValueError("sync_bn needs several processes (torchrun --nproc-per-node N)")
        return step_fn, scaler
    if sync_bn:
        if device.type != "cuda":
            raise ValueError("sync_bn needs CUDA: torch's SyncBatchNorm does not run on the CPU")
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if not restored and _info.rank:
        seed = rank_seed(torch.initial_seed())
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
    # The teacher stays outside DDP: its weights are not broadcast, its BatchNorm statistics not synchronised.
    teacher = [n for n, _ in [*step_fn.named_parameters(), *step_fn.named_buffers()] if n.startswith("module.teacher.")]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(step_fn, teacher)
    ids = [device.index] if device.type == "cuda" else None
    # find_unused_parameters: a stage may leave learnable parts unused (e.g. adapters outside their stage)
    return DistributedDataParallel(step_fn, device_ids=ids, find_unused_parameters=True), scaler
