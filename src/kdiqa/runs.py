"""Run folders: the recorded config, the resume guard, seeds and device, and checkpoint recovery.

Every training command (``kdiqa train``, ``distill``, ``pretext``) starts with :func:`prepare_run`:
it records the run's config in its folder, refuses to resume a folder under another recipe (only the
keys of :data:`RUN_ONLY_KEYS` may change), seeds the random generators and picks the device. The
training loop itself is :mod:`kdiqa.trainer`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from . import distributed
from .checkpoint import atomic_write_text


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# Settings that change how fast a run goes or where it lives, never what it learns, plus ``epochs`` (a finished
# run may be resumed to train longer): a run may resume under other values of these.
RUN_ONLY_KEYS = frozenset(
    {"threads", "device", "workers", "resume", "out_dir", "epochs", "snapshots", "channels_last", "keep_decoded_mb"}
)


def config_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two recorded configs, ignoring :data:`RUN_ONLY_KEYS`.

    A key in only one of them is a field added to (or dropped from) kdiqa between the two runs, not
    a change of the run's recipe, and is not reported.

    Example:
        >>> config_changes({"optim": {"lr": 1e-3}, "threads": 1}, {"optim": {"lr": 3e-4}, "threads": 2, "new": 0})
        ['optim.lr']
        >>> config_changes({"stages": [{"lr": 1, "epochs": 2}]}, {"stages": [{"lr": 2, "epochs": 3}]})
        ['stages.0.lr']

    A function-matching stage (``data: views``) is the exception: its epochs divide its views, so they
    decide which views each epoch sees, and a change is reported.

        >>> config_changes({"stages": [{"data": "views", "epochs": 2}]}, {"stages": [{"data": "views", "epochs": 4}]})
        ['stages.0.epochs']
    """
    changes = []
    run_only = RUN_ONLY_KEYS - {"epochs"} if old.get("data") == "views" else RUN_ONLY_KEYS
    for key in sorted(old.keys() & new.keys()):
        if key in run_only:
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
    """Threads, process group, seeds and device from a run config; creates ``cfg.out_dir`` and records the config.

    Under torchrun every process gets its device here (:func:`kdiqa.distributed.setup`); only rank 0
    touches the run folder, and the others wait for it. A run folder that already holds a resumable run of
    another recipe is refused (resuming would mix the two): the error names the keys that differ.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    place, device = distributed.setup(cfg.device)
    seed_everything(cfg.seed)  # the same initial model in every process
    out = Path(cfg.out_dir)
    if place.is_main:
        out.mkdir(parents=True, exist_ok=True)
        recover_last(out)
        recorded, config = out / config_name, json.loads(json.dumps(asdict(cfg)))  # as recorded: tuples → lists
        if cfg.resume and recorded.is_file() and (out / "last" / "train_state.json").is_file():
            changed = config_changes(json.loads(recorded.read_text()), config)
            if changed:
                raise ValueError(
                    f"{out} holds a run of another config (it differs in {', '.join(changed)}); resuming would "
                    "mix the two: choose another out_dir, or --set resume=false to start it again"
                )
        atomic_write_text(recorded, json.dumps(config, indent=2))
    distributed.barrier()
    return device, out


def read_history(out: str | Path) -> list[dict]:
    """A run folder's per-epoch records (``out/history.jsonl``, written by :mod:`kdiqa.trainer`), in order."""
    return [json.loads(line) for line in (Path(out) / "history.jsonl").read_text().splitlines() if line.strip()]


def snapshot_folder(out: str | Path, stage: int, epoch: int) -> Path:
    """Where a run with ``snapshots`` keeps the model of one epoch: ``out/snapshots/s<stage>e<epoch>``."""
    return Path(out) / "snapshots" / f"s{stage}e{epoch}"


def recover_last(out: Path) -> None:
    """Completes a checkpoint that a kill interrupted, so ``out/last`` is the newest complete one.

    A checkpoint is written to ``last.partial`` (its ``train_state.json`` last), then the old ``last``
    moves to ``last.old``, ``last.partial`` becomes ``last`` and ``last.old`` is removed: at any moment
    one complete copy exists, and the weights, optimizer moments and position always belong together.
    """
    last, partial, old = out / "last", out / "last.partial", out / "last.old"
    if not last.exists():
        if (partial / "train_state.json").is_file():
            os.replace(partial, last)
        elif old.exists():
            os.replace(old, last)
    for leftover in (partial, old):
        if leftover.exists():
            shutil.rmtree(leftover)
