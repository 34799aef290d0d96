"""Teacher caches: fixed crops with the teacher's scores and maps, computed once and reused."""

from functools import partial

import pytest
import torch
from conftest import synthetic_photo
from torch.utils.data import DataLoader

import kdiqa
from kdiqa.distill import DistillConfig, build_distiller
from kdiqa.distill.cache import CachedCrops, CacheSource, build_cache, cache_meta


def _sources(n=3, size=(72, 60)):
    return [CacheSource(f"img{i}", partial(synthetic_photo, size, seed=i), mos=i / 10) for i in range(n)]


def _teacher(seed=0):
    torch.manual_seed(seed)
    return kdiqa.create_model("iqa_test_tiny").eval()


def test_cache_matches_the_teacher_and_is_reused(tmp_path):
    teacher = _teacher()
    path = build_cache(teacher, _sources(), crop=48, views=2, stages=[1, 3], root=tmp_path, workers=0, progress=False)
    meta = cache_meta(path)
    assert meta["items"] == 6 and meta["stages"] == [1, 3]
    ds = CachedCrops(path)
    assert len(ds) == 6 and ds.feat_keys == ["t_feat1", "t_feat3"]
    assert [round(float(ds[i]["score"]), 3) for i in range(6)] == [0.0, 0.0, 0.1, 0.1, 0.2, 0.2]
    batch = next(iter(DataLoader(ds, batch_size=6)))
    assert batch["image"].shape == (6, 3, 48, 48)
    assert not torch.equal(batch["image"][0], batch["image"][1])  # two different crops of one image
    with torch.no_grad():
        z, feats = teacher.forward_intermediates(batch["image"], indices=[1, 3])
    torch.testing.assert_close(batch["t_score"], z)
    torch.testing.assert_close(batch["t_feat3"], feats[1], atol=1e-2, rtol=1e-2)  # stored as float16
    stamp = path.stat().st_mtime_ns
    assert build_cache(teacher, _sources(), 48, 2, [1, 3], tmp_path, workers=0, progress=False) == path
    assert path.stat().st_mtime_ns == stamp  # reused, not rebuilt
    other = build_cache(_teacher(seed=1), _sources(), 48, 2, [1, 3], tmp_path, workers=0, progress=False)
    assert other != path  # another teacher never reuses stale targets
    with pytest.raises(ValueError, match="outside the teacher's stages"):
        build_cache(teacher, _sources(), 48, 2, [7], tmp_path, workers=0, progress=False)


@pytest.mark.parametrize("method", ["response", "hints", "review"])
def test_cached_targets_give_the_online_losses(method, tmp_path):
    teacher = _teacher()
    torch.manual_seed(0)
    student = kdiqa.create_model("iqa_test_tiny")
    path = build_cache(teacher, _sources(4), 48, 1, [1, 2, 3, 4], tmp_path, workers=0, progress=False)
    batch = next(iter(DataLoader(CachedCrops(path), batch_size=4)))
    cfg = DistillConfig(hint_pairs=[[3, 2]], review_stages=[1, 2, 3, 4])
    d = build_distiller(method, student, teacher, cfg).eval()  # eval: no dropout, same BN both times
    _, cached = d.forward_train(batch, "joint")
    _, online = d.forward_train({"image": batch["image"], "score": batch["score"]}, "joint")
    assert cached.keys() == online.keys()
    for k in cached:
        assert cached[k].item() == pytest.approx(online[k].item(), rel=2e-2, abs=1e-4), k


def test_flip_mirrors_crop_and_maps_together(tmp_path):
    path = build_cache(_teacher(), _sources(1), 48, 1, [2, 3], tmp_path, workers=0, progress=False)
    plain, flipping = CachedCrops(path), CachedCrops(path, flip=True)
    ref = plain[0]
    torch.manual_seed(0)
    seen = set()
    for _ in range(20):
        item = flipping[0]
        mirrored = torch.equal(item["image"], ref["image"].flip(-1))
        assert mirrored or torch.equal(item["image"], ref["image"])
        for k in ("t_feat2", "t_feat3"):
            assert torch.equal(item[k], ref[k].flip(-1) if mirrored else ref[k])
        assert item["t_score"] == ref["t_score"]
        seen.add(mirrored)
    assert seen == {True, False}


def test_missing_cached_stage_is_a_clear_error(tmp_path):
    teacher = _teacher()
    path = build_cache(teacher, _sources(2), 48, 1, [1], tmp_path, workers=0, progress=False)
    batch = next(iter(DataLoader(CachedCrops(path), batch_size=2)))
    d = build_distiller("hints", kdiqa.create_model("iqa_test_tiny"), teacher, DistillConfig(hint_pairs=[[3, 3]]))
    with pytest.raises(KeyError, match=r"teacher stage 3 is not in the teacher cache \(cached stages: \[1\]\)"):
        d.forward_train(batch, "soft")


def test_review_stages_subset():
    teacher, student = _teacher(), kdiqa.create_model("iqa_test_tiny")
    d = build_distiller("review", student, teacher, DistillConfig(review_stages=[2, 4], review_channels=8))
    assert len(d.abfs) == 2 and d.abfs[0].att is not None and d.abfs[1].att is None
    assert d.abfs[0].conv1[0].out_channels == 8
    assert d.abfs[1].conv2[0].out_channels == teacher.feature_info[4]["num_chs"]
    _, losses = d.forward_train({"image": torch.rand(3, 3, 64, 64), "score": torch.rand(3)}, "joint")
    assert torch.isfinite(losses["review"])
    with pytest.raises(ValueError, match="review_stages"):
        build_distiller("review", student, teacher, DistillConfig(review_stages=[9]))


def test_distill_run_with_cache(tmp_path, rated_folder, tiny_teacher_and_photos):
    import json

    from kdiqa.cli import main

    teacher, photos = tiny_teacher_and_photos
    cfg = tmp_path / "d.yaml"
    cfg.write_text(f"""
method: review
student: iqa_test_tiny
teacher: {teacher}
distill: {{review_stages: [2, 3, 4]}}
pool: {{sources: [{{path: {photos}}}], per_image: 2}}
labelled: {{dataset: "csv:{rated_folder / "labels.csv"}", crop: 48, batch_size: 4, workers: 0, val_fraction: 0.25}}
cache: {{enabled: true, dir: {tmp_path / "cache"}, pool_crop: 40, pool_views: 2, labelled_crop: 48,
         labelled_views: 2, stages: [2, 3, 4], workers: 0}}
stages:
  - {{stage: soft, data: pool, epochs: 1}}
  - {{stage: joint, data: labelled, epochs: 1, steps_per_epoch: 2}}
  - {{stage: task, data: labelled, epochs: 1, steps_per_epoch: 1}}
eval: {{mode: center, crop: 48}}
out_dir: {tmp_path / "run"}
threads: 1
""")
    assert main(["distill", "--config", str(cfg), "--quiet"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # pool: 4 photos × (2 distorted + 1 clean) items × 2 crops = 24 crops → 6 steps; then 2 + 1
    assert summary["total_steps"] == 6 + 2 + 1
    metas = sorted(cache_meta(p)["items"] for p in (tmp_path / "cache").glob("*.safetensors"))
    assert metas == [24, 2 * 14]  # 14 labelled train images (after the validation carve) × 2 crops
    # a run that finds its caches trains exactly as the run that built them
    from safetensors.torch import load_file

    assert main(["distill", "--config", str(cfg), "--quiet", "--set", f"out_dir={tmp_path / 'again'}"]) == 0
    built, found = (load_file(str(tmp_path / d / "last" / "model.safetensors")) for d in ("run", "again"))
    assert all(torch.equal(built[k], found[k]) for k in built)


def test_grouped_batches_never_mix_parts():
    from torch.utils.data import ConcatDataset, TensorDataset

    from kdiqa.distill.data import GroupedBatches

    ds = ConcatDataset([TensorDataset(torch.zeros(10)), TensorDataset(torch.ones(7))])
    sampler = GroupedBatches(ds, 3, torch.Generator().manual_seed(0))
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3 + 2
    assert all(len(b) == 3 and len({i < 10 for i in b}) == 1 for b in batches)
    flat = [i for b in batches for i in b]
    assert len(set(flat)) == len(flat)
    assert {b[0] < 10 for b in batches} == {True, False}


def test_grouped_batches_passes_cover_the_data_once_each():
    from torch.utils.data import TensorDataset

    from kdiqa.distill.data import GroupedBatches

    ds = TensorDataset(torch.zeros(7))
    sampler = GroupedBatches(ds, 3, torch.Generator().manual_seed(0), passes=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3 * 2
    for p in range(3):  # each pass: 2 disjoint batches of one fresh permutation
        flat = [i for b in batches[2 * p : 2 * p + 2] for i in b]
        assert len(set(flat)) == 6
    assert len({tuple(b) for b in batches}) > 2


def test_bundled_teacher_fingerprint_is_stable():
    """Caches and run folders are keyed by the teacher's fingerprint: a new ModelConfig option at its default must not
    change it, or every cache is rebuilt and every resumed grid refuses its own runs."""
    import json
    from pathlib import Path

    from kdiqa.config import load_config
    from kdiqa.distill.cache import teacher_fingerprint
    from kdiqa.distill.engine import DistillRunConfig

    recorded = json.loads((Path(__file__).parents[1] / "benchmarks/results/distill_clive.json").read_text())
    assert teacher_fingerprint(kdiqa.load("iqa_effnet_lite2.clive")) == recorded["teacher"]["fingerprint"]
    # the distillation recipes name the teacher they were measured with, not the `teacher` alias
    for config in (Path(__file__).parents[1] / "configs").rglob("distill*/*.yaml"):
        teacher = load_config(DistillRunConfig, config).teacher
        assert teacher != "teacher", f"{config.name} names the alias, whose target may change"
