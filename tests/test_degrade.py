"""Degraded copies of labelled crops and the ranking loss they feed (kdiqa.data.degrade)."""

import json

import pytest
import torch

import kdiqa
from kdiqa.data.degrade import DEGRADING, WithDegraded
from kdiqa.distill import DistillConfig, build_distiller
from kdiqa.losses import margin_loss


def _base(n=3, size=40):
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.rand(3, size, size, generator=g), "score": torch.tensor(0.5)} for _ in range(n)]


def test_copy_is_the_same_crop_degraded_and_follows_torch_seed():
    ds = WithDegraded(_base(), types=("gaussian_blur",), levels=(5, 5))
    torch.manual_seed(3)
    item = ds[1]
    assert set(item) == {"image", "score", "degraded"} and item["degraded"].shape == (3, 40, 40)
    # blur σ 5 px: the copy keeps the crop's mean and loses most of its pixel-to-pixel variation
    assert abs(float(item["degraded"].mean() - item["image"].mean())) < 0.02
    assert item["degraded"].diff(dim=-1).abs().mean() < 0.25 * item["image"].diff(dim=-1).abs().mean()
    torch.manual_seed(3)
    assert torch.equal(ds[1]["degraded"], item["degraded"])  # the loader's generator decides: resumable


def test_types_are_only_degrading_and_levels_checked():
    assert "contrast_change" not in DEGRADING and "white_noise" in DEGRADING
    with pytest.raises(ValueError, match="distortion names"):
        WithDegraded(_base(), types=("white_nois",))
    with pytest.raises(ValueError, match="1 <= low <= high <= 5"):
        WithDegraded(_base(), levels=(4, 2))


def test_margin_loss_hand_computed():
    hi, lo = torch.tensor([0.8, 0.5, 0.2]), torch.tensor([0.7, 0.6, 0.0])
    # margins 0.1: (0.1 - 0.1 → 0) + (0.1 + 0.1 = 0.2) + (0.1 - 0.2 → 0) → 0.2 / 3
    assert float(margin_loss(hi, lo, 0.1)) == pytest.approx(0.2 / 3, abs=1e-6)


@pytest.mark.parametrize("stage", ["task", "joint"])
def test_distiller_adds_degrade_loss_only_when_asked(stage):
    torch.manual_seed(0)
    student, teacher = kdiqa.create_model("iqa_test_tiny"), kdiqa.create_model("iqa_test_tiny")
    batch = {"image": torch.rand(4, 3, 48, 48), "score": torch.rand(4), "degraded": torch.rand(4, 3, 48, 48)}
    off = build_distiller("response", student, teacher, DistillConfig())
    assert "degrade" not in off.forward_train(batch, stage)[1]
    on = build_distiller("response", student, teacher, DistillConfig(degrade_weight=2.0, degrade_margin=0.3))
    on.eval()  # deterministic forwards (no dropout) to recompute the loss by hand; gradients still flow
    pred, losses = on.forward_train(batch, stage)
    with torch.no_grad():
        expected = 2.0 * torch.relu(0.3 - (pred - on.student(batch["degraded"]))).mean()
    assert float(losses["degrade"].detach()) == pytest.approx(float(expected), rel=1e-5)
    losses["loss"].backward()
    assert student.head.fc2.weight.grad.abs().sum() > 0


def test_distill_run_with_degrade(tmp_path, rated_folder):
    from kdiqa.cli import main

    cfg = tmp_path / "d.yaml"
    cfg.write_text(f"""
method: none
student: iqa_test_tiny
teacher: iqa_test_tiny
distill: {{degrade_weight: 1.0}}
labelled: {{dataset: "csv:{rated_folder / "labels.csv"}", crop: 48, batch_size: 4, workers: 0, val_fraction: 0.25}}
stages:
  - {{stage: task, data: labelled, epochs: 1, steps_per_epoch: 3}}
eval: {{mode: center, crop: 48}}
out_dir: {tmp_path / "run"}
threads: 1
""")
    assert main(["distill", "--config", str(cfg), "--quiet"]) == 0
    record = json.loads((tmp_path / "run" / "history.jsonl").read_text().splitlines()[0])
    assert record["train_degrade"] > 0 and record["train_loss"] > record["train_degrade"]
