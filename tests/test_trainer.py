"""The one training loop: a run killed at any point resumes to exactly the uninterrupted run's result."""

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kdiqa import trainer
from kdiqa.config import load_config
from kdiqa.engine import TrainConfig, fit
from kdiqa.runs import recover_last

SMOKE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "smoke" / "tiny.yaml"


class Killed(Exception):
    """Stands for kill -9: the process stops where it is, nothing is cleaned up."""


def _cfg(rated_folder, out, *extra) -> TrainConfig:
    overrides = [f"data.dataset=csv:{rated_folder / 'labels.csv'}", f"out_dir={out}", "optim.epochs=4", *extra]
    return load_config(TrainConfig, SMOKE_CONFIG, overrides)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "last" / "model.safetensors"))


def _history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("where", ["after_checkpoint", "mid_swap", "before_swap"])
def test_killed_run_resumes_to_the_uninterrupted_weights(rated_folder, tmp_path, monkeypatch, where):
    fit(_cfg(rated_folder, tmp_path / "whole", "optim.ema_decay=0.9"), progress=False)
    reference, ref_history = _weights(tmp_path / "whole"), _history(tmp_path / "whole")

    calls = {"n": 0}
    real_checkpoint, real_replace = trainer._checkpoint, os.replace

    def checkpoint_then_die(*args, **kwargs):
        calls["n"] += 1
        if where == "after_checkpoint" and calls["n"] == 2:
            real_checkpoint(*args, **kwargs)
            raise Killed
        if where == "before_swap" and calls["n"] == 2:  # last.partial written, last untouched
            monkeypatch.setattr(trainer.os, "replace", die_on_swap)
        if where == "mid_swap" and calls["n"] == 2:  # the old last moved aside, the new one not yet in place
            monkeypatch.setattr(trainer.os, "replace", die_after_first_move)
        real_checkpoint(*args, **kwargs)

    def die_on_swap(src, dst):
        raise Killed

    def die_after_first_move(src, dst):
        real_replace(src, dst)
        if Path(dst).name == "last.old":
            raise Killed

    monkeypatch.setattr(trainer, "_checkpoint", checkpoint_then_die)
    run = tmp_path / "killed"
    with pytest.raises(Killed):
        fit(_cfg(rated_folder, run, "optim.ema_decay=0.9"), progress=False)
    monkeypatch.setattr(trainer, "_checkpoint", real_checkpoint)
    monkeypatch.setattr(trainer.os, "replace", real_replace)
    if where == "mid_swap":
        assert not (run / "last").exists() and (run / "last.old").is_dir()
    torch.manual_seed(123)  # a new process: whatever the random state, the resumed run restores its own

    fit(_cfg(rated_folder, run, "optim.ema_decay=0.9"), progress=False)
    assert not (run / "last.partial").exists() and not (run / "last.old").exists()
    weights, history = _weights(run), _history(run)
    assert set(weights) == set(reference)
    assert all(torch.equal(weights[k], reference[k]) for k in reference)
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]  # no epoch twice, none lost
    assert [h["val_srcc"] for h in history] == [h["val_srcc"] for h in ref_history]
    ema, ref_ema = (
        load_file(str(run / "ema" / "model.safetensors")),
        load_file(str(tmp_path / "whole/ema/model.safetensors")),
    )
    assert all(torch.equal(ema[k], ref_ema[k]) for k in ref_ema)


def test_recover_last_keeps_the_newest_complete_checkpoint(tmp_path):
    (tmp_path / "last.old").mkdir()
    (tmp_path / "last.old" / "train_state.json").write_text('{"epoch": 0}')
    (tmp_path / "last.partial").mkdir()  # killed while writing: no train_state.json yet
    recover_last(tmp_path)
    assert json.loads((tmp_path / "last" / "train_state.json").read_text()) == {"epoch": 0}
    assert not (tmp_path / "last.old").exists() and not (tmp_path / "last.partial").exists()
    (tmp_path / "last.partial").mkdir()
    (tmp_path / "last.partial" / "train_state.json").write_text('{"epoch": 1}')
    os.replace(tmp_path / "last", tmp_path / "last.old")
    recover_last(tmp_path)  # the new checkpoint was complete: it wins
    assert json.loads((tmp_path / "last" / "train_state.json").read_text()) == {"epoch": 1}


def test_snapshots_keep_every_epoch_and_may_be_switched_on_when_resuming(rated_folder, tmp_path):
    run = tmp_path / "run"
    fit(_cfg(rated_folder, run, "optim.epochs=1"), progress=False)
    assert not (run / "snapshots").exists()
    fit(_cfg(rated_folder, run, "optim.epochs=3", "snapshots=true"), progress=False)  # not a change of recipe
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == ["s0e1", "s0e2"]
    last, snap = _weights(run), load_file(str(run / "snapshots" / "s0e2" / "model.safetensors"))
    assert all(torch.equal(last[k], snap[k]) for k in last)
    assert json.loads((run / "snapshots" / "s0e1" / "config.json").read_text())["epoch"] == 1
