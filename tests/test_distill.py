"""The distillation methods: losses, gradients, frozen teacher, adapter shapes."""

import pytest
import torch

import kdiqa
from kdiqa.distill import DISTILLERS, DistillConfig, build_distiller
from kdiqa.distill.adapters import probe_features
from kdiqa.distill.losses import fidelity_loss, hcl_loss, hint_loss, rkd_distance_loss, similarity_preserving_loss


def _models(student="iqa_mobilenetv3_small_050", teacher="iqa_test_tiny"):
    torch.manual_seed(0)
    return kdiqa.create_model(student), kdiqa.create_model(teacher)


def _batch(n=4, size=64, rated=True):
    g = torch.Generator().manual_seed(1)
    score = torch.rand(n, generator=g) if rated else torch.full((n,), float("nan"))
    return {"image": torch.rand(n, 3, size, size, generator=g), "score": score}


def test_registry():
    build_distiller("none", *_models())
    assert set(DISTILLERS.names()) == {"none", "response", "hints", "review"}
    with pytest.raises(KeyError, match="Did you mean 'review'"):
        build_distiller("reviw", *_models())


@pytest.mark.parametrize("method", ["none", "response", "hints", "review"])
@pytest.mark.parametrize("stage", ["soft", "joint", "task"])
def test_step_trains_student_and_adapters_never_teacher(method, stage):
    if method == "none" and stage == "soft":
        pytest.skip("the MOS-only control has nothing to learn from unrated images (tested below)")
    student, teacher = _models()
    d = build_distiller(method, student, teacher, DistillConfig(hint_pairs=[[3, 3], [2, 1]])).train()
    assert not d.teacher.training
    before = {k: v.clone() for k, v in d.teacher.state_dict().items()}
    rated = stage != "soft"
    pred, losses = d.forward_train(_batch(rated=rated), stage=stage, step=5)
    assert pred.shape == (4,) and all(torch.isfinite(v) for v in losses.values())
    if method in ("hints", "review") and stage != "task":
        assert {"hint", "review"} & set(losses)
    if method == "review" and stage != "task":
        assert "relation" in losses
    opt = torch.optim.SGD(d.learnable_parameters(), lr=0.1)
    opt.zero_grad()
    losses["loss"].backward()
    assert student.head.fc2.weight.grad is not None and student.head.fc2.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in d.teacher.parameters())
    if method in ("hints", "review") and stage != "task":
        adapters = [p for n, p in d.named_parameters() if n.startswith(("adapters.", "abfs."))]
        assert adapters and any(p.grad is not None and p.grad.abs().sum() > 0 for p in adapters)
    opt.step()
    after = d.teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics included
    learnable = {id(p) for p in d.learnable_parameters()}
    assert not any(id(p) in learnable for p in d.teacher.parameters())
    assert learnable >= {id(p) for p in student.parameters()}


def test_soft_stage_without_teacher_signal_fails_clearly():
    student, teacher = _models()
    d = build_distiller("none", student, teacher)
    with pytest.raises(ValueError, match="no loss"):
        d.forward_train(_batch(rated=False), stage="soft")


@pytest.mark.parametrize(
    ("student", "teacher"), [("iqa_mobilenetv3_small_050", "iqa_test_tiny"), ("iqa_test_tiny", "iqa_lcnet_050")]
)
def test_adapter_shapes_follow_the_models(student, teacher):
    s, t = _models(student, teacher)
    t_shapes, s_shapes = probe_features(t), probe_features(s)
    assert [c for c, _ in t_shapes] == [f["num_chs"] for f in t.feature_info]
    d = build_distiller("hints", s, t, DistillConfig(hint_pairs=[[3, 2], [4, 4]]))
    assert d.adapters[0].conv.in_channels == s_shapes[2][0] and d.adapters[0].conv.out_channels == t_shapes[3][0]
    r = build_distiller("review", s, t)
    x = torch.rand(2, 3, 96, 80)
    _, s_feats = s.forward_intermediates(x)
    _, t_feats = t.forward_intermediates(x)
    outs = r.review(s_feats)
    for o, tf in zip(outs, t_feats, strict=True):
        assert o.shape[1] == tf.shape[1]
    # different input sizes for the two models are matched at run time
    assert torch.isfinite(hint_loss(torch.rand(2, 8, 12, 10), torch.rand(2, 8, 6, 5)))


def test_truncated_student_is_reviewed_against_the_teachers_first_stages():
    s = kdiqa.create_model("iqa_test_tiny", num_stages=3)
    t = kdiqa.create_model("iqa_test_tiny")
    r = build_distiller("review", s, t, DistillConfig(review_channels=8))
    assert r.stages == [0, 1, 2]
    assert [a.conv2[0].out_channels for a in r.abfs] == [f["num_chs"] for f in t.feature_info[:3]]
    pred, losses = r.forward_train(_batch(), stage="joint", step=5)
    assert pred.shape == (4,) and torch.isfinite(losses["review"]) and torch.isfinite(losses["relation"])
    # the other way round there is no teacher stage for the student's last ones
    with pytest.raises(ValueError, match="at least as many stages in the teacher"):
        build_distiller("review", t, s)


def test_losses_hand_computed():
    ones, zeros = torch.ones(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    # 8×8 map: full MSE 1, plus 4×4 (w ½), 2×2 (¼), 1×1 (⅛), each MSE 1 → (1+½+¼+⅛)/(1+½+¼+⅛) = 1
    assert hcl_loss(ones, zeros).item() == pytest.approx(1.0)
    half = torch.zeros(1, 1, 8, 8)
    half[..., :4] = 2.0  # full MSE 2; pooled 4×4: half the cells 2 → MSE 2; 2×2: 2; 1×1: mean 1 → 1
    expected = (2 + 0.5 * 2 + 0.25 * 2 + 0.125 * 1) / (1 + 0.5 + 0.25 + 0.125)
    assert hcl_loss(half, zeros).item() == pytest.approx(expected)
    e = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    assert rkd_distance_loss(e, e * 5).item() == pytest.approx(0.0, abs=1e-6)
    assert rkd_distance_loss(e, torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])).item() > 0
    x = torch.eye(3)
    assert similarity_preserving_loss(x, x).item() == pytest.approx(0.0)
    # G_s = I, G_t = all-ones rows normalised (1/√3): ‖G_t − G_s‖² / 9
    gt = torch.full((3, 3), 3**-0.5)
    assert similarity_preserving_loss(x, torch.ones(3, 3)).item() == pytest.approx(((gt - x) ** 2).sum().item() / 9)
    # fidelity: two items; prediction ties (p = ½) against a certain target order (g ≈ 1): 1 − √½
    assert fidelity_loss(torch.tensor([0.0, 0.0]), torch.tensor([100.0, 0.0])).item() == pytest.approx(
        1 - 0.5**0.5, abs=1e-4
    )


@pytest.mark.parametrize("method", ["none", "response", "hints", "review"])  # none: MOS in the pool stage too
def test_two_step_distill_run_and_resume(method, tmp_path, rated_folder, tiny_teacher_and_photos, capsys):
    import json

    from kdiqa.cli import main

    teacher, photos = tiny_teacher_and_photos
    cfg = tmp_path / "d.yaml"
    cfg.write_text(f"""
method: {method}
student: iqa_test_tiny
teacher: {teacher}
distill: {{hint_pairs: [[3, 2]]}}
pool: {{sources: [{{path: {photos}}}], per_image: 2}}
labelled: {{dataset: "csv:{rated_folder / "labels.csv"}", crop: 48, batch_size: 4, workers: 0, val_fraction: 0.25}}
stages:
  - {{stage: soft, data: pool, epochs: 1, steps_per_epoch: 2}}
  - {{stage: task, data: labelled, epochs: 1, steps_per_epoch: 2}}
eval: {{mode: center, crop: 48}}
out_dir: {tmp_path / "run"}
threads: 1
""")
    assert main(["distill", "--config", str(cfg), "--quiet"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["total_steps"] == 4 and summary["method"] == method
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()
    assert kdiqa.load(tmp_path / "run" / "best").name == "iqa_test_tiny"
    capsys.readouterr()
    history = (tmp_path / "run" / "last" / "train_state.json").read_text()
    assert main(["distill", "--config", str(cfg), "--quiet"]) == 0  # finished: resumes and does nothing
    assert "resumed from" in capsys.readouterr().out
    assert (tmp_path / "run" / "last" / "train_state.json").read_text() == history
    # the wall time reported is the training's, not the few seconds of the no-op resume
    seconds = json.loads(history)["seconds"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["wall_seconds"] >= round(seconds, 1)


def test_relative_feature_norm_is_scale_free():
    student, teacher = _models()
    d = build_distiller("hints", student, teacher, DistillConfig(hint_pairs=[[3, 3]]))
    t = torch.full((2, 4, 3, 3), 10.0)
    s = torch.zeros(2, 4, 3, 3)
    assert d.scaled(hint_loss(s, t), t).item() == pytest.approx(1.0, rel=1e-4)  # 100 / 100
    assert d.scaled(hint_loss(s, 100 * t), 100 * t).item() == pytest.approx(1.0, rel=1e-4)
    d.cfg.feature_norm = "none"
    assert d.scaled(hint_loss(s, t), t).item() == pytest.approx(100.0)


def test_student_freeze_keeps_prefixes_and_their_bn_statistics(tmp_path, rated_folder, tiny_teacher_and_photos):
    from safetensors.torch import load_file

    from kdiqa.checkpoint import save_model
    from kdiqa.cli import main

    teacher, photos = tiny_teacher_and_photos
    save_model(kdiqa.create_model("iqa_test_tiny"), tmp_path / "init")
    frozen = ["backbone.conv_stem", "backbone.bn1", "backbone.blocks.0"]
    cfg = tmp_path / "d.yaml"
    cfg.write_text(f"""
method: response
student: iqa_test_tiny
student_init: {tmp_path / "init"}
student_freeze: {frozen}
teacher: {teacher}
pool: {{sources: [{{path: {photos}}}], per_image: 2}}
labelled: {{dataset: "csv:{rated_folder / "labels.csv"}", crop: 48, batch_size: 4, workers: 0, val_fraction: 0.25}}
stages:
  - {{stage: joint, data: labelled, epochs: 1, steps_per_epoch: 3, lr: 0.01}}
eval: {{mode: center, crop: 48}}
out_dir: {tmp_path / "run"}
threads: 1
""")
    assert main(["distill", "--config", str(cfg), "--quiet"]) == 0
    before, after = (load_file(str(d / "model.safetensors")) for d in (tmp_path / "init", tmp_path / "run" / "last"))
    inside = [k for k in before if any(k.startswith(p + ".") for p in frozen)]
    outside = [k for k in before if k.startswith("backbone.blocks.1.") and before[k].is_floating_point()]
    assert inside and outside
    assert all(torch.equal(before[k], after[k]) for k in inside)  # weights and running BN statistics
    assert any(not torch.equal(before[k], after[k]) for k in outside)
    # the initialising checkpoint's scale and views (0–100, full image) give way to this run's
    from kdiqa.data.datasets import get_dataset

    trained = kdiqa.load(tmp_path / "run" / "last").cfg
    expected = get_dataset(f"csv:{rated_folder / 'labels.csv'}").score_range
    assert tuple(trained.score_range) == tuple(expected) != (0.0, 100.0)
    assert (trained.eval_mode, trained.eval_crop) == ("center", 48)


def test_stage_gets_its_steps_beyond_one_pass(tmp_path, rated_folder, tiny_teacher_and_photos, capsys):
    """Cached labelled crops hold fewer batches than the stage asks for: further passes, not fewer steps."""
    import json

    from kdiqa.cli import main

    teacher, photos = tiny_teacher_and_photos
    cfg = tmp_path / "d.yaml"
    body = f"""
method: response
student: iqa_test_tiny
teacher: {teacher}
pool: {{sources: [{{path: {photos}}}], per_image: 2}}
labelled: {{dataset: "csv:{rated_folder / "labels.csv"}", crop: 48, batch_size: BS, workers: 0, val_fraction: 0.25}}
cache: {{enabled: true, dir: {tmp_path / "cache"}, labelled_crop: 48, labelled_views: 1, pool_crop: 48}}
stages:
  - {{stage: joint, data: labelled, epochs: 2, steps_per_epoch: 7}}
eval: {{mode: center, crop: 48}}
out_dir: {tmp_path / "run"}
threads: 1
"""
    cfg.write_text(body.replace("BS", "4"))  # 14 labelled train crops: 3 batches per pass
    assert main(["distill", "--config", str(cfg), "--quiet"]) == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["total_steps"] == 14
    scarce = body.replace("BS", "4").replace("val_fraction: 0.25", "val_fraction: 0.25, label_fraction: 0.5")
    cfg.write_text(scarce.replace(str(tmp_path / "run"), str(tmp_path / "scarce")))
    assert main(["distill", "--config", str(cfg), "--quiet"]) == 0  # label-scarce: half the MOS, same steps
    summary = json.loads((tmp_path / "scarce" / "summary.json").read_text())
    assert (summary["train_images"], summary["val_images"], summary["total_steps"]) == (7, 4, 14)
    counts = sorted(json.loads(p.read_text())["n_sources"] for p in (tmp_path / "cache").glob("cache_*.json"))
    assert counts == [7, 14]  # the label-scarce run's teacher cache holds only the images it has MOS for
    cfg.write_text(body.replace("BS", "4").replace("val_fraction: 0.25", "val_fraction: 0.0"))
    assert main(["distill", "--config", str(cfg), "--quiet"]) == 2  # no split to choose the checkpoint on
    assert "labelled.val_fraction must be > 0" in capsys.readouterr().err
    assert '"val_fraction": 0.25' in (tmp_path / "run" / "distill_config.json").read_text()  # the run is untouched
    cfg.write_text(body.replace("BS", "64").replace(str(tmp_path / "run"), str(tmp_path / "run2")))
    assert main(["distill", "--config", str(cfg), "--quiet"]) == 2
    assert "stage 0: 14 'labelled' items make no batch of 64" in capsys.readouterr().err


def test_distill_reads_pseudo_label_soft_labels(tmp_path, rated_folder, tiny_teacher_and_photos, monkeypatch, capsys):
    """`kdiqa pseudo-label` writes the targets a distillation run reads (`soft_labels`): the pool's
    batches carry the stored teacher scores, so the teacher is not run on them."""
    import json

    from kdiqa.cli import main
    from kdiqa.distill.data import soft_label_pool
    from kdiqa.distill.engine import DistillRunConfig
    from kdiqa.distill.response import ResponseDistill
    from kdiqa.softlabels import load_soft_labels

    teacher, photos = tiny_teacher_and_photos
    pool_yaml = tmp_path / "pool.yaml"
    pool_yaml.write_text(f"sources: [{{path: {photos}}}]\nper_image: 2\n")
    labels = tmp_path / "soft.sqlite"
    assert main(["pseudo-label", "--teacher", str(teacher), "--pool", str(pool_yaml), "--out", str(labels),
                 "--crop", "32", "--workers", "0", "--quiet"]) == 0  # fmt: skip
    cfg = tmp_path / "d.yaml"
    cfg.write_text(f"""
method: response
student: iqa_test_tiny
teacher: {teacher}
soft_labels: {labels}
pool: {{sources: [{{path: {photos}}}], per_image: 2}}
labelled: {{dataset: "csv:{rated_folder / "labels.csv"}", crop: 32, batch_size: 4, workers: 0, val_fraction: 0.25}}
stages: [{{stage: soft, data: pool, epochs: 1, steps_per_epoch: 3}}]
eval: {{mode: center, crop: 32}}
out_dir: {tmp_path / "run"}
threads: 1
""")
    seen = []
    original = ResponseDistill.teacher_targets
    monkeypatch.setattr(
        ResponseDistill,
        "teacher_targets",
        lambda self, b, maps=True: seen.append("t_score" in b) or original(self, b, maps),
    )
    assert main(["distill", "--config", str(cfg), "--quiet"]) == 0
    assert seen == [True, True, True]  # every pool batch came with its stored targets
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["total_steps"] == 3

    from kdiqa.config import load_config
    from kdiqa.data.transforms import TrainTransform
    from kdiqa.engine import labelled_splits

    run_cfg = load_config(DistillRunConfig, cfg)
    _, _, val_ds = labelled_splits(run_cfg.labelled)
    pool = soft_label_pool(run_cfg, teacher, val_ds, TrainTransform(32))
    stored = load_soft_labels(labels)
    item = pool.labels.rows[0][0]
    assert pool[0]["t_score"].item() == pytest.approx(stored[item.item_id][0]) and torch.isnan(pool[0]["score"])
    # labels of another teacher are refused, and so are feature methods (the file holds scores only)
    other = tmp_path / "other"
    kdiqa.save_model(kdiqa.create_model("iqa_test_tiny"), other)
    with pytest.raises(ValueError, match="labelled by another teacher"):
        soft_label_pool(load_config(DistillRunConfig, cfg, [f"teacher={other}"]), other, val_ds, TrainTransform(32))
    capsys.readouterr()
    assert main(["distill", "--config", str(cfg), "--quiet", "--set", "method=hints", "--set", "resume=false"]) == 2
    assert "soft_labels hold scores only; hints needs the teacher's maps" in capsys.readouterr().err
