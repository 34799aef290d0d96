"""Damaged checkpoints fail with one clear error that names the file and the problem."""

from __future__ import annotations

import json

import pytest
import torch

import kdiqa
from kdiqa.checkpoint import CONFIG_NAME, WEIGHTS_NAME, CheckpointError, load_model, save_model
from kdiqa.cli import main


@pytest.fixture
def ckpt(tmp_path):
    return save_model(kdiqa.create_model("iqa_test_tiny"), tmp_path / "ck")


def _truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("keep", [0.5, 0.999, 0.0])
def test_truncated_weights(ckpt, keep):
    _truncate(ckpt / WEIGHTS_NAME, keep)
    with pytest.raises(CheckpointError, match=rf"{WEIGHTS_NAME}: damaged or truncated safetensors file") as info:
        load_model(ckpt)
    assert str(ckpt / WEIGHTS_NAME) in str(info.value)


def test_invalid_config_json(ckpt):
    (ckpt / CONFIG_NAME).write_text('{"kdiqa_model": {"name": ')
    with pytest.raises(CheckpointError, match=r"config\.json: damaged checkpoint config, not valid JSON") as info:
        load_model(ckpt)
    assert str(ckpt / CONFIG_NAME) in str(info.value)
    (ckpt / CONFIG_NAME).write_text('{"kdiqa_model": "iqa_test_tiny"}')
    with pytest.raises(CheckpointError, match="invalid 'kdiqa_model' section"):
        load_model(ckpt)
    (ckpt / CONFIG_NAME).write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="no 'kdiqa_model' section"):
        load_model(ckpt)


def test_weights_of_another_model(ckpt, tmp_path):
    other = save_model(kdiqa.create_model("iqa_test_tiny", head_hidden=16), tmp_path / "other")
    (ckpt / WEIGHTS_NAME).write_bytes((other / WEIGHTS_NAME).read_bytes())
    with pytest.raises(CheckpointError, match=r"tensors do not fit iqa_test_tiny of config\.json \(size mismatch"):
        load_model(ckpt)


def test_intact_checkpoint_still_loads(tmp_path):
    model = kdiqa.create_model("iqa_test_tiny").eval()
    folder = save_model(model, tmp_path / "ok")
    assert json.loads((folder / CONFIG_NAME).read_text())["kdiqa_model"]["name"] == "iqa_test_tiny"
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(load_model(folder)(x), model(x))


@pytest.mark.parametrize("damage", ["weights", "config"])
def test_cli_reports_one_line(ckpt, tmp_path, capsys, damage):
    from PIL import Image

    Image.new("RGB", (48, 40), (90, 120, 30)).save(tmp_path / "a.png")
    if damage == "weights":
        _truncate(ckpt / WEIGHTS_NAME)
    else:
        (ckpt / CONFIG_NAME).write_text("{not json")
    rc = main(["score", str(tmp_path / "a.png"), "--model", str(ckpt)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("kdiqa score: error: ")
    assert (WEIGHTS_NAME if damage == "weights" else CONFIG_NAME) in err and "Traceback" not in err
