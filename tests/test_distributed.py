"""torchrun on the CPU (gloo, 2 processes): DDP training, kill and resume, sharded soft labels.

A DDP step sees the same global batch as one process (each process takes items rank::world of it), and
one process with ``accum_steps=2`` splits its batch the same way, so the two runs train identically: the
tests hold them to equal losses and equal weights (BatchNorm running statistics aside: under DDP they
come from rank 0's half of each batch).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_photo
from safetensors.torch import load_file

import kdiqa
from kdiqa.checkpoint import save_model
from kdiqa.distributed import ShardedBatches, micro_batches
from kdiqa.softlabels import read_meta_file, table

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "kdiqa"]


def run(cmd: list[str], *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


SINGLE = [sys.executable, "-m", "kdiqa"]


@pytest.fixture
def views_run(tmp_path, rated_folder):
    """A function-matching distillation: a tiny teacher, a tiny student without dropout, 4 epochs of views."""
    torch.manual_seed(0)
    teacher = save_model(kdiqa.create_model("iqa_test_tiny"), tmp_path / "teacher")
    student = save_model(kdiqa.create_model("iqa_test_tiny", head_dropout=0.0), tmp_path / "student")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(6):
        synthetic_photo((64, 64), seed=100 + i).save(photos / f"{i}.png")
    cfg = tmp_path / "d.yaml"
    cfg.write_text(f"""
method: response
student: iqa_test_tiny
student_init: {student}
teacher: {teacher}
pool: {{sources: [{{path: {photos}}}]}}
matching: {{crop: 32}}
labelled: {{dataset: "csv:{rated_folder / "labels.csv"}", crop: 32, batch_size: 8, workers: 0, val_fraction: 0.25}}
stages: [{{stage: soft, data: views, epochs: 4, views: 256, lr: 2.0e-3}}]
eval: {{mode: center, crop: 32}}
threads: 1
channels_last: false
""")
    return cfg


def _params(folder: Path) -> dict[str, torch.Tensor]:
    w = load_file(str(folder / "model.safetensors"))
    return {k: v for k, v in w.items() if "running_" not in k and "num_batches" not in k}


def _history(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]


def _assert_same_run(a: Path, b: Path) -> None:
    ha, hb = _history(a), _history(b)
    assert len(ha) == len(hb) == 4
    for ra, rb in zip(ha, hb, strict=True):  # the loss curve (mean over processes under DDP)
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-5, abs=1e-7)
        assert ra["train_views"] == rb["train_views"] == 64
    pa, pb = _params(a / "last"), _params(b / "last")
    assert pa.keys() == pb.keys()
    for k in pa:
        torch.testing.assert_close(pb[k], pa[k], rtol=1e-4, atol=1e-5, msg=k)


def test_ddp_matches_one_process_with_the_same_effective_batch(tmp_path, views_run):
    run(SINGLE, "distill", "--config", str(views_run), "--set", f"out_dir={tmp_path / 'one'}", "--set", "accum_steps=2")
    proc = run(TORCHRUN, "distill", "--config", str(views_run), "--set", f"out_dir={tmp_path / 'ddp'}", "--quiet")
    _assert_same_run(tmp_path / "one", tmp_path / "ddp")
    assert proc.stdout.count('"total_steps": 32') == 1  # rank 0 alone prints the summary
    assert (tmp_path / "ddp" / "best" / "model.safetensors").is_file()
    rng = load_file(str(tmp_path / "ddp" / "last" / "rng.safetensors"))
    assert set(rng) == {"torch", "torch_rank1"} and not torch.equal(rng["torch"], rng["torch_rank1"])


def _children(parent: int) -> list[int]:
    """Process ids whose parent is ``parent`` (from /proc/*/stat: works without CONFIG_PROC_CHILDREN)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # the process ended while we looked
            continue
        if int(fields[1]) == parent:
            out.append(int(stat.parent.name))
    return out


def _workers(agent: int) -> dict[int, int]:
    """``rank → pid`` of torchrun's worker processes."""
    out = {}
    for pid in _children(agent):
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        rank = [e for e in env if e.startswith(b"RANK=")]
        if rank:
            out[int(rank[0][5:])] = pid
    return out


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds torchrun's workers through /proc (Linux)")
def test_a_killed_rank_resumes_to_the_uninterrupted_run(tmp_path, views_run):
    run(SINGLE, "distill", "--config", str(views_run), "--set", f"out_dir={tmp_path / 'one'}", "--set", "accum_steps=2")
    out = tmp_path / "ddp"
    args = ["distill", "--config", str(views_run), "--set", f"out_dir={out}", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    agent = subprocess.Popen([*TORCHRUN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while not ((out / "history.jsonl").is_file() and (out / "history.jsonl").read_text().strip()):
        assert agent.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.005)
    os.kill(_workers(agent.pid)[1], signal.SIGKILL)  # rank 1 dies in the middle of epoch 1
    agent.communicate(timeout=120)
    assert agent.returncode != 0, "the run finished before rank 1 was killed"
    assert len(_history(out)) < 4
    proc = run(TORCHRUN, *args)  # the same command resumes
    assert "resumed from" in proc.stdout
    _assert_same_run(tmp_path / "one", out)


def test_sharded_soft_labels_merge_to_the_single_process_file(tmp_path):
    torch.manual_seed(0)
    teacher = save_model(kdiqa.create_model("iqa_test_tiny"), tmp_path / "teacher")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        synthetic_photo((80, 64), seed=i).save(photos / f"p{i}.png")
    pool = tmp_path / "pool.yaml"
    pool.write_text(f"sources: [{{path: {photos}}}]\nper_image: 2\n")
    common = ["pseudo-label", "--teacher", str(teacher), "--pool", str(pool), "--crop", "32", "--views", "2"]
    common += ["--workers", "0", "--quiet", "--batch-size", "3"]
    run(SINGLE, *common, "--out", str(tmp_path / "one.sqlite"))
    merged = tmp_path / "ddp.sqlite"
    proc = run(TORCHRUN, *common, "--out", str(merged))
    assert json.loads(proc.stdout)["merged"]["items"] == 15 and proc.stdout.count('"merged"') == 1
    assert [read_meta_file(tmp_path / f"ddp.rank{r}of2.sqlite")["shard"] for r in (0, 1)] == ["0/2", "1/2"]
    a, b = table(tmp_path / "one.sqlite"), table(merged)
    assert [r["item_id"] for r in a] == [r["item_id"] for r in b] == list(range(15))
    for ra, rb in zip(a, b, strict=True):
        assert ra["path"] == rb["path"] and ra["boxes"] == rb["boxes"]
        np.testing.assert_allclose(ra["scores"], rb["scores"], atol=1e-6)
    again = run(TORCHRUN, *common, "--out", str(merged))  # the same command again: nothing left, merged again
    assert json.loads(again.stdout)["merged"]["items"] == 15


def test_shard_flags_are_refused_under_torchrun(monkeypatch, capsys):
    from kdiqa.cli import main

    for k, v in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(k, v)  # torchrun's variables: refused before any process group is joined
    assert main(["pseudo-label", "--pool", "p.yaml", "--out", "x.sqlite", "--shard", "0/2"]) == 2
    assert "each process takes shard rank/world: drop --shard" in capsys.readouterr().err


def test_sharded_batches_and_micro_batches_split_alike():
    batches = [list(range(i, i + 6)) for i in range(0, 18, 6)]
    shards = [list(ShardedBatches(batches, r, 3)) for r in range(3)]
    assert [sorted(i for s in shards for i in s[b]) for b in range(3)] == batches  # every item once per step
    batch = {"image": torch.arange(6.0)[:, None], "score": torch.arange(6.0)}
    parts = micro_batches(batch, 3)  # micro-batch j of one process = process j's share of the batch
    assert [p["score"].tolist() for p, _ in parts] == [[0, 3], [1, 4], [2, 5]] == [shards[r][0] for r in range(3)]
    assert sum(w for _, w in parts) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="cannot be shared by 3 processes"):
        list(ShardedBatches([[0, 1]], 0, 3))


SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke" / "tiny.yaml"


def _train(rated_folder, out, *sets: str) -> int:
    from kdiqa.cli import main

    data = f"data.dataset=csv:{rated_folder / 'labels.csv'}"
    args = ["train", "--config", str(SMOKE), "--set", data, "--set", f"out_dir={out}", "--quiet"]
    for s in sets:
        args += ["--set", s]
    return main(args)


def test_bf16_autocast_trains_on_the_cpu(rated_folder, tmp_path):
    assert _train(rated_folder, tmp_path / "bf16", "amp=bf16", "optim.epochs=1") == 0
    (record,) = _history(tmp_path / "bf16")
    assert np.isfinite(record["train_loss"]) and 0 < record["train_loss"] < 10


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["amp=fp8"], "amp must be none, bf16 or fp16, got 'fp8'"),
        (["optim.accum_steps=0"], "accum_steps must be >= 1"),
        (["sync_bn=true"], "sync_bn needs several processes"),
        (["device=cuda:0"], "CUDA is not available here"),
    ],
)
def test_bad_scaling_settings_are_one_line_errors(rated_folder, tmp_path, capsys, sets, message):
    if "cuda" in sets[0] and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert _train(rated_folder, tmp_path / "x", *sets) == 2
    assert message in capsys.readouterr().err


def test_train_runs_under_torchrun_and_rank_0_alone_writes(rated_folder, tmp_path):
    out = tmp_path / "ddp"
    data = f"data.dataset=csv:{rated_folder / 'labels.csv'}"
    proc = run(TORCHRUN, "train", "--config", str(SMOKE), "--set", data, "--set", f"out_dir={out}", "--quiet")
    assert proc.stdout.count('"best_epoch"') == 1  # one summary, from rank 0
    history = _history(out)
    assert [r["epoch"] for r in history] == [0, 1] and all(np.isfinite(r["train_loss"]) for r in history)
    assert "val_srcc" in history[0] and (out / "best" / "model.safetensors").is_file()
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2
