"""Self-describing checkpoints: ``model.safetensors`` + ``config.json`` in one folder.

Loading never unpickles: tensors come from safetensors, everything else from JSON. A training
run's resumable state (optimizer moments, epoch, RNG) is stored the same way (``train_state.*``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .models.iqa import IQAModel, ModelConfig

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that exists but cannot be used (truncated, not safetensors, bad JSON, wrong
    tensors); the message names the file and the problem."""


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def save_model(model: IQAModel, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Writes ``model.safetensors`` and ``config.json`` (model config + ``extra`` info) to ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(model.state_dict(), folder / WEIGHTS_NAME, metadata={"format": "pt"})
    config = {"format_version": FORMAT_VERSION, "kdiqa_model": model.cfg.to_dict(), **(extra or {})}
    atomic_write_text(folder / CONFIG_NAME, json.dumps(config, indent=2, default=str))
    return folder


def read_config(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a kdiqa checkpoint: {CONFIG_NAME} is missing")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint config, not valid JSON ({exc})") from exc
    if not isinstance(config, dict) or "kdiqa_model" not in config:
        raise CheckpointError(f"{path}: no 'kdiqa_model' section; not a kdiqa checkpoint")
    return config


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; :class:`CheckpointError` naming the file when it is damaged."""
    try:
        return load_file(str(path), device=str(device))
    except SafetensorError as exc:
        raise CheckpointError(f"{path}: damaged or truncated safetensors file ({exc})") from exc


def load_model(folder: str | Path, map_location: str | torch.device = "cpu") -> IQAModel:
    """Rebuilds a model from a checkpoint folder (architecture from config.json, weights from safetensors).

    Raises:
        FileNotFoundError: ``config.json`` or ``model.safetensors`` is missing.
        CheckpointError: either file is damaged, or the weights do not fit the configured model.
    """
    folder = Path(folder)
    config_path = folder / CONFIG_NAME
    try:
        cfg = ModelConfig.from_dict(read_config(folder)["kdiqa_model"])
    except (TypeError, AttributeError) as exc:
        raise CheckpointError(f"{config_path}: invalid 'kdiqa_model' section ({exc})") from exc
    model = IQAModel(cfg)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{folder}: {WEIGHTS_NAME} is missing")
    state = load_weights(weights, map_location)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()  # a header line, then one line per kind of mismatch
        detail = (lines[1] if len(lines) > 1 else lines[0]).strip()[:300]
        raise CheckpointError(f"{weights}: its tensors do not fit {cfg.name} of {CONFIG_NAME} ({detail})") from exc
    return model.eval()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- resumable training state -------------------------------------------------------------------


def save_train_state(folder: str | Path, optimizer: torch.optim.Optimizer, info: dict[str, Any]) -> None:
    """Optimizer tensors → ``train_state.safetensors``; param groups, epoch etc. → ``train_state.json``."""
    folder = Path(folder)
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, state in sd["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{name}"] = value
            else:
                scalars[f"{pid}.{name}"] = value
    atomic_save_tensors(tensors, folder / "train_state.safetensors")
    payload = {"param_groups": sd["param_groups"], "scalars": scalars, **info}
    atomic_write_text(folder / "train_state.json", json.dumps(payload, indent=2, default=float))


def load_train_state(folder: str | Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    folder = Path(folder)
    payload = json.loads((folder / "train_state.json").read_text())
    tensors = load_file(str(folder / "train_state.safetensors"))
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for key, value in payload.pop("scalars").items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": payload.pop("param_groups")})
    return payload


def average_checkpoints(folders: list[str | Path], out: str | Path, weights: list[float] | None = None) -> Path:
    """A "model soup" (Wortsman et al., ICML 2022): the weighted mean of the parameters of
    checkpoints of one architecture fine-tuned from the same initialisation. BatchNorm statistics are
    averaged too; integer buffers (``num_batches_tracked``) are taken from the first checkpoint.
    """
    if len(folders) < 2:
        raise ValueError("averaging needs at least two checkpoints")
    configs = [read_config(f)["kdiqa_model"] for f in folders]
    if any(c["arch"] != configs[0]["arch"] for c in configs):
        raise ValueError(f"checkpoints have different architectures: {[c['arch'] for c in configs]}")
    w = weights or [1.0 / len(folders)] * len(folders)
    if len(w) != len(folders) or abs(sum(w) - 1.0) > 1e-6:
        raise ValueError(f"need one weight per checkpoint, summing to 1; got {w}")
    states = [load_weights(Path(f) / WEIGHTS_NAME) for f in folders]
    if any(set(s) != set(states[0]) for s in states):
        raise ValueError("checkpoints have different parameter names")
    soup = {
        k: sum(wi * s[k].double() for wi, s in zip(w, states, strict=True)).to(v.dtype) if v.is_floating_point() else v
        for k, v in states[0].items()
    }
    model = IQAModel(ModelConfig.from_dict(configs[0]))
    model.load_state_dict(soup)
    return save_model(model, out, {"averaged_from": [str(f) for f in folders], "weights": w})
