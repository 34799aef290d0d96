"""Channel pruning: a pruned model's config rebuilds it, without the pruning library."""

import sys

import pytest
import torch
from torch import nn

import kdiqa
from kdiqa.checkpoint import load_model
from kdiqa.models.shapes import apply_shapes, changed_shapes


def test_shapes_rebuild_depthwise_norm_and_linear_layers():
    def net(c: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1),
            nn.BatchNorm2d(c),
            nn.Conv2d(c, c, 3, padding=1, groups=c),  # depthwise
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(c, 2),
        )

    small, big = net(5), net(8)
    shapes = changed_shapes(small, big)
    assert shapes["2.weight"] == [5, 1, 3, 3] and shapes["5.weight"] == [2, 5] and "5.bias" not in shapes
    apply_shapes(big, shapes)
    big.load_state_dict(small.state_dict())
    assert big[2].groups == big[2].in_channels == big[2].out_channels == 5 and big[1].num_features == 5
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(big.eval()(x), small.eval()(x))
    with pytest.raises(KeyError, match="no module 'nope'"):
        apply_shapes(net(8), {"nope.weight": [1]})
    with pytest.raises(KeyError, match="not a tensor of that module"):
        apply_shapes(nn.Sequential(nn.ReLU()), {"0.weight": [1]})
    with pytest.raises(ValueError, match="cannot rebuild a pruned PReLU"):
        apply_shapes(nn.Sequential(nn.PReLU(4)), {"0.weight": [2]})
    grouped = nn.Sequential(nn.Conv2d(4, 4, 1, groups=2))
    with pytest.raises(ValueError, match="grouped convolutions"):
        apply_shapes(grouped, {"0.weight": [2, 2, 1, 1]})


def test_pruned_model_saves_and_loads_without_torch_pruning(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch_pruning")
    from kdiqa.cli import main
    from kdiqa.models.pruning import prune

    model = kdiqa.create_model("iqa_test_tiny").eval()
    pruned = prune(model, 0.5, size=32)
    assert pruned.num_params() < 0.6 * model.num_params()
    assert pruned.head.fc1.out_features == model.head.fc1.out_features  # the head keeps its width
    x = torch.rand(2, 3, 48, 48)
    score, feats = pruned.forward_intermediates(x)
    assert [f.shape[1] for f in feats] == [f["num_chs"] for f in pruned.feature_info]
    assert feats[-1].shape[1] < model.feature_info[-1]["num_chs"]

    assert main(["prune", "--model", "iqa_test_tiny", "--pretrained", "none", "--ratio", "0.5", "--size", "32",
                 "--out", str(tmp_path / "p")]) == 0  # fmt: skip
    assert "M parameters" in capsys.readouterr().out
    kdiqa.save_model(pruned, tmp_path / "mine")
    monkeypatch.setitem(sys.modules, "torch_pruning", None)  # loading must not need the library
    loaded = load_model(tmp_path / "mine")
    assert torch.equal(loaded(x), pruned(x)) and torch.allclose(loaded(x), score)
    assert load_model(tmp_path / "p").num_params() == pruned.num_params()
    with pytest.raises(ImportError, match="kdiqa\\[prune\\]"):
        prune(model, 0.5, size=32)


def test_prune_refuses_bad_requests():
    pytest.importorskip("torch_pruning")
    from kdiqa.models.pruning import prune

    with pytest.raises(ValueError, match="ratio must be in"):
        prune(kdiqa.create_model("iqa_test_tiny"), 1.0)
    with pytest.raises(ValueError, match="single-level head"):
        prune(kdiqa.create_model("iqa_test_tiny", head_levels=(1, 2)), 0.5, size=32)


def test_prune_keeps_the_input_pool(tmp_path, capsys):
    pytest.importorskip("torch_pruning")
    from kdiqa.cli import main

    args = ["prune", "--model", "iqa_test_tiny", "--pretrained", "none", "--ratio", "0.5", "--size", "32"]
    assert main([*args, "--input-pool", "2", "--out", str(tmp_path / "p")]) == 0
    assert load_model(tmp_path / "p").cfg.input_pool == 2
    again = ["prune", "--model", str(tmp_path / "p"), "--ratio", "0.5", "--input-pool", "2", "--out", str(tmp_path)]
    assert main(again) == 2
    assert "applies to an architecture name" in capsys.readouterr().err
