import json

import torch
from conftest import synthetic_photo

import kdiqa
from kdiqa.cli import main
from kdiqa.data.distortions import list_distortions
from kdiqa.pretext import NOT_RANKABLE, PretextConfig, PretextPairs, pretext_losses


def _photos(tmp_path, n=4):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(n):
        synthetic_photo((80, 72), seed=i).save(d / f"{i}.png")
    return d


def test_pairs_are_deterministic_same_crop_two_levels(tmp_path):
    d = _photos(tmp_path)
    ds = PretextPairs(sorted(str(p) for p in d.iterdir()), ["gaussian_blur", "mean_shift"], 32, 8, seed=0)
    a, b = ds[3], ds[3]
    assert torch.equal(a["mild"], b["mild"]) and a["mild"].shape == (3, 32, 32)
    assert not torch.equal(a["mild"], a["strong"])
    ds.epoch = 1
    assert not torch.equal(ds[3]["mild"], a["mild"]) or ds[3]["type"] != a["type"]
    kinds = {ds[i]["type"]: ds[i]["rankable"] for i in range(8)}
    assert all(r == (["gaussian_blur", "mean_shift"][t] not in NOT_RANKABLE) for t, r in kinds.items())


def test_losses_and_gradients(tmp_path):
    d = _photos(tmp_path)
    ds = PretextPairs(sorted(str(p) for p in d.iterdir()), list_distortions(), 32, 4, seed=1)
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    model = kdiqa.create_model("iqa_test_tiny")
    head = torch.nn.Linear(model.embed_dim, 25)
    losses = pretext_losses(model, head, batch, PretextConfig())
    assert torch.isfinite(losses["loss"]) and losses["type"] > 0
    losses["loss"].backward()
    assert model.backbone.conv_stem.weight.grad.abs().sum() > 0 and head.weight.grad.abs().sum() > 0


def test_pretext_cli_run(tmp_path):
    d = _photos(tmp_path)
    cfg = tmp_path / "pretext.yaml"
    cfg.write_text(
        f"model: iqa_test_tiny\nsources:\n  - path: {d}\ncrop: 32\nsamples_per_epoch: 8\n"
        f"batch_size: 4\nworkers: 0\nout_dir: {tmp_path / 'out'}\nthreads: 1\n"
    )
    assert main(["pretext", "--config", str(cfg), "--quiet"]) == 0
    history = [json.loads(line) for line in (tmp_path / "out" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 1 and 0 <= history[0]["train_type_acc"] <= 1
    assert kdiqa.load(tmp_path / "out" / "model").name == "iqa_test_tiny"
    # the pretext task runs on the one trainer: it resumes after its last finished epoch
    assert main(["pretext", "--config", str(cfg), "--quiet", "--set", "epochs=2"]) == 0
    history = [json.loads(line) for line in (tmp_path / "out" / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1] and (tmp_path / "out" / "last" / "extra.safetensors").is_file()
