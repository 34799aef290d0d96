"""Pretrained tags in the model registry: ``arch.tag`` names, aliases, ``list_models(pretrained=True)``."""

from __future__ import annotations

import json
import re

import pytest
import torch

import kdiqa
from kdiqa import hub
from kdiqa.checkpoint import save_model
from kdiqa.cli import main
from kdiqa.models import pretrained
from kdiqa.models.zoo import MODELS, create_model, list_models, pretrained_tags


@pytest.fixture
def toy_tag(tmp_path, monkeypatch):
    """``iqa_test_tiny.toy``: a saved tiny model registered as bundled weights (alias ``toy``), plus
    ``iqa_test_tiny.absent``, a tag whose files are not installed."""
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setitem(pretrained.PRETRAINED_TAGS, "iqa_test_tiny", {"toy": "a toy", "absent": "not installed"})
    monkeypatch.setitem(pretrained.ALIASES, "toy", "iqa_test_tiny.toy")
    model = kdiqa.create_model("iqa_test_tiny", head_hidden=16).eval()
    save_model(model, tmp_path / "iqa_test_tiny.toy")
    return model


def test_every_tag_belongs_to_a_registered_architecture():
    for arch, tags in pretrained.PRETRAINED_TAGS.items():
        assert arch in MODELS and tags and pretrained_tags(arch) == tags
    assert set(list_models(pretrained=True)) == set(pretrained.pretrained_names())
    assert all(split.count(".") == 1 for split in list_models(pretrained=True))
    assert list_models("iqa_effnet_lite0*", pretrained=True) == [
        "iqa_effnet_lite0.clive_half",
        "iqa_effnet_lite0.clive_half_native",
        "iqa_effnet_lite0.clive_half_rank",
        "iqa_effnet_lite0.clive_p70",
        "iqa_effnet_lite0_s4.clive",
        "iqa_effnet_lite0_s4.clive_rank",
        "iqa_effnet_lite0_s4.clive_third",
        "iqa_effnet_lite0_s4.clive_third_native",
        "iqa_effnet_lite0_s4.clive_third_rank",
    ]
    assert "iqa_test_tiny" in list_models() and not any("." in n for n in list_models())
    assert pretrained_tags("iqa_lcnet_050") == {}
    with pytest.raises(KeyError, match="Unknown model 'iqa_lcnet'"):
        pretrained_tags("iqa_lcnet")


def test_create_model_by_tag_and_alias(toy_tag):
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        for name in ("iqa_test_tiny.toy", "toy"):
            model = create_model(name)
            assert model.cfg.head_hidden == 16 and not model.training
            assert torch.equal(model(x), toy_tag(x))
        assert torch.equal(create_model("iqa_test_tiny.toy", pretrained=True)(x), toy_tag(x))
        assert torch.equal(hub.load("toy")(x), toy_tag(x))
    assert create_model("iqa_test_tiny").cfg.head_hidden == 32  # the architecture alone: untrained
    assert "iqa_test_tiny.toy" in list_models(pretrained=True) and "iqa_test_tiny.toy" in hub.list_pretrained()
    assert "iqa_test_tiny.absent" not in hub.list_pretrained()
    assert hub.resolve_folder("toy") == pretrained.WEIGHTS_DIR / "iqa_test_tiny.toy"


def test_create_model_tag_errors(toy_tag):
    with pytest.raises(KeyError, match=r"no pretrained tag 'tyo'\. Did you mean 'iqa_test_tiny\.toy'\?"):
        create_model("iqa_test_tiny.tyo")
    with pytest.raises(ValueError, match="names trained weights"):
        create_model("iqa_test_tiny.toy", pretrained="imagenet")
    with pytest.raises(ValueError, match=r"configuration cannot change \(head_hidden\)"):
        create_model("iqa_test_tiny.toy", head_hidden=8)
    with pytest.raises(FileNotFoundError, match="missing from this installation"):
        create_model("iqa_test_tiny.absent")
    with pytest.raises(FileNotFoundError, match="no checkpoint folder"):
        hub.resolve_folder("iqa_test_tiny.absent")
    with pytest.raises(KeyError, match="Unknown model 'iqa_tset_tiny'"):
        create_model("iqa_tset_tiny.toy")


def test_list_models_pretrained_cli(toy_tag, capsys):
    assert main(["list-models", "--pretrained", "iqa_test_tiny*"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    params = f"{toy_tag.num_params() / 1e6:.2f} M"  # counted from the saved tensors
    assert lines == [
        "name\tCLIVE test SRCC\tPLCC\tparams\tGMACs@500\timages/s onnx\timages/s torch\twhat",
        "iqa_test_tiny.absent\t–\t–\t–\t–\t–\t–\tnot installed  [weights not installed]",
        f"iqa_test_tiny.toy\t–\t–\t{params}\t–\t–\t–\ta toy  (alias: toy)",  # no figures recorded
    ]


def test_list_models_pretrained_shows_the_recorded_figures(capsys):
    name = pretrained.resolve_name("default")
    if name not in hub.list_pretrained():
        pytest.skip("the bundled default weights are not installed")
    assert main(["list-models", "--pretrained", name]) == 0
    line = capsys.readouterr().out.strip().splitlines()[1].split("\t")
    config = json.loads((hub.resolve_folder("default") / "config.json").read_text())
    test, speed = config["clive_test"], config["speed"]
    params = f"{kdiqa.load('default').num_params() / 1e6:.2f} M"
    assert line[:7] == [name, f"{test['srcc']:.3f}", f"{test['plcc']:.3f}", params, f"{speed['macs'] / 1e9:.2f}",
                        f"{speed['onnx_fp32_images_per_s']:.0f}", f"{speed['torch_images_per_s']:.0f}"]  # fmt: skip
    aliases = line[7].split("(alias: ")[1].rstrip(")").split(", ")
    assert "default" in aliases and aliases == sorted(a for a, n in pretrained.ALIASES.items() if n == name)


def _card_speed(card: str) -> dict:
    """The speed paragraph of a model card's text: its cited source, ONNX and torch images/s and × teacher."""
    assert "\n- Speed " in card, "the card has no speed line"
    para = card.split("\n- Speed ", 1)[1].split("\n- ", 1)[0].replace("\n", " ")
    out = {"source": re.search(r"\(`([^`]+)`", para).group(1)}
    for key, pattern in {"onnx": r"([\d.]+) (?:images/s )?in ONNX", "torch": r"([\d.]+) (?:images/s )?in torch",
                         "ratio": r"([\d.]+)× the teacher in the same run"}.items():  # fmt: skip
        found = re.search(pattern, para)
        out[key] = float(found.group(1)) if found else None
    return out


def test_model_cards_quote_the_recorded_speed():
    """Each card's speed line gives the figures that ``list-models`` prints, from the run it cites."""
    teacher = json.loads((pretrained.weights_folder("teacher") / "config.json").read_text())["speed"]
    checked = 0
    for name in hub.list_pretrained():
        folder = pretrained.weights_folder(name)
        speed = json.loads((folder / "config.json").read_text()).get("speed")
        if not speed or not (folder / "README.md").is_file():
            continue
        card = _card_speed((folder / "README.md").read_text())
        assert card["source"] == speed["source"], name
        assert card["onnx"] == pytest.approx(speed["onnx_fp32_images_per_s"], abs=0.5), name
        assert card["torch"] == pytest.approx(speed["torch_images_per_s"], abs=0.5), name
        if card["ratio"] is not None:
            ratio = speed["onnx_fp32_images_per_s"] / teacher["onnx_fp32_images_per_s"]
            assert card["ratio"] == pytest.approx(ratio, abs=0.051), name
        checked += 1
    if checked == 0:
        pytest.skip("no bundled weights with recorded speed are installed")


def test_bundled_default_through_the_registry():
    name = pretrained.resolve_name("default")
    if name not in hub.list_pretrained():
        pytest.skip("the bundled default weights are not installed")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(create_model("default")(x), kdiqa.load("default")(x))
    assert create_model("default").cfg.name == name.split(".")[0]


def test_stage_indices():
    from kdiqa.models.iqa import stage_indices

    assert stage_indices(4) == [0, 1, 2, 3] and stage_indices(4, 1) == [3] and stage_indices(4, (-2, 0)) == [2, 0]
    for bad in (0, 5, [4], [-5]):
        with pytest.raises(ValueError, match="out of range"):
            stage_indices(4, bad)
    model = kdiqa.create_model("iqa_test_tiny").eval()
    with torch.no_grad():
        _, feats = model.forward_intermediates(torch.rand(1, 3, 64, 64), indices=[-1])
    assert len(feats) == 1 and feats[0].shape[1] == model.feature_info[-1]["num_chs"]
