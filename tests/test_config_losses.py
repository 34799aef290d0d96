import pytest
import torch

from kdiqa.config import ConfigError, load_config
from kdiqa.engine import TrainConfig
from kdiqa.losses import combined_loss, l1_loss, mse_loss, plcc_loss, rank_loss


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  name: iqa_test_tiny\noptim:\n  epochs: 3\n")
    cfg = load_config(TrainConfig, path, ["optim.lr=0.01", "data.resize=null", "model.freeze=[a, b]"])
    assert cfg.model.name == "iqa_test_tiny" and cfg.optim.epochs == 3 and cfg.optim.lr == 0.01
    assert cfg.model.freeze == ["a", "b"] and cfg.data.resize is None


@pytest.mark.parametrize(
    ("text", "overrides", "match"),
    [
        ("optim:\n  epoch: 3\n", [], "optim.epoch.*did you mean 'optim.epochs'"),
        ("", ["data.crop=big"], "data.crop: expected int"),
        ("- 1\n", [], "top level must be a mapping"),
        ("", ["nonsense"], "key=value"),
    ],
)
def test_bad_configs(tmp_path, text, overrides, match):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(TrainConfig, path, overrides)


def test_losses_hand_computed():
    p, t = torch.tensor([0.0, 0.5, 1.0]), torch.tensor([0.5, 0.5, 0.5])
    assert l1_loss(p, t).item() == pytest.approx(1 / 3)
    assert mse_loss(p, t).item() == pytest.approx(1 / 6)
    # perfectly anti-correlated → (1 − (−1)) / 2 = 1
    assert plcc_loss(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 2.0, 1.0])).item() == pytest.approx(1.0)
    # pairs (i,j): targets 0<1<2; predictions 0, 2, 1 → only (1,2) is wrong by 1 (both orders): 2/6
    assert rank_loss(torch.tensor([0.0, 2.0, 1.0]), torch.tensor([0.0, 1.0, 2.0])).item() == pytest.approx(2 / 6)
    assert rank_loss(p, t).item() == 0.0  # all ties: nothing to rank
    out = combined_loss(p, t, {"l1": 1.0, "mse": 2.0, "plcc": 0.0})
    assert set(out) == {"l1", "mse", "loss"} and out["loss"].item() == pytest.approx(1 / 3 + 2 / 6)
    with pytest.raises(KeyError):
        combined_loss(p, t, {"huber": 1.0})


def _lrs(total: int, warmup: int, steps: int) -> list[float]:
    from kdiqa.trainer import warmup_cosine

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched, out = warmup_cosine(opt, total, warmup), []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    out.append(opt.param_groups[0]["lr"])
    return out


def test_lr_schedule():
    """Linear warm-up from lr / warmup, then cosine to 0 (torch's LinearLR + CosineAnnealingLR)."""
    lrs = _lrs(100, 10, 100)
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.5)
    assert lrs[100] == pytest.approx(0.0, abs=1e-12)
    assert _lrs(50, 0, 1)[0] == 1.0  # no warm-up: cosine from the full rate


def test_lr_schedule_resumes_on_its_grid():
    """A rebuilt schedule moved on k steps (a resumed run) gives the live schedule's rates."""
    from kdiqa.trainer import _advance, warmup_cosine

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, 40, 6)
    _advance(sched, 17)
    assert opt.param_groups[0]["lr"] == pytest.approx(_lrs(40, 6, 17)[17], abs=1e-12)


def test_freeze_prefixes_respect_name_boundaries():
    from kdiqa.engine import freeze_prefixes, train_except_frozen
    from kdiqa.models.zoo import create_model

    m = create_model("iqa_test_tiny")
    frozen = freeze_prefixes(m, ["backbone.blocks.1"])
    assert frozen and all(n.startswith("backbone.blocks.1.") for n in frozen)
    train_except_frozen(m, ["backbone.blocks.1"])
    assert not m.backbone.blocks[1].training and m.backbone.blocks[2].training and m.head.training
    with pytest.raises(ValueError, match="match no parameter"):
        freeze_prefixes(m, ["backbone.block"])


def test_validation_srcc_is_signed_so_anti_correlated_models_lose(rated_folder, tmp_path, monkeypatch):
    import dataclasses
    import json

    from kdiqa.config import from_dict
    from kdiqa.engine import fit
    from kdiqa.models.iqa import IQAModel

    cfg = from_dict(
        TrainConfig,
        {
            "model": {"name": "iqa_test_tiny", "pretrained": "none"},
            "data": {
                "dataset": f"csv:{rated_folder / 'labels.csv'}",
                "crop": 48,
                "batch_size": 4,
                "workers": 0,
                "val_fraction": 0.4,
            },
            "optim": {"epochs": 1, "lr": 0.0},
            "eval": {"mode": "center", "crop": 48},
            "threads": 1,
            "channels_last": False,
        },
    )

    def val_srcc(out):
        fit(dataclasses.replace(cfg, out_dir=str(out)), progress=False)
        return json.loads((out / "history.jsonl").read_text().splitlines()[0])["val_srcc"]

    plain = val_srcc(tmp_path / "plain")
    original = IQAModel.forward
    monkeypatch.setattr(IQAModel, "forward", lambda self, x: -original(self, x))  # same model, sign flipped
    flipped = val_srcc(tmp_path / "flipped")
    assert plain != 0 and flipped == pytest.approx(-plain, abs=1e-9)
