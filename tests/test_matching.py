"""Function matching: fresh, reproducible views that the teacher scores exactly as the student sees them."""

import json
from pathlib import Path

import pytest
import torch

from kdiqa.distill.matching import MatchingViews, MatchSection


@pytest.fixture
def photos(tiny_teacher_and_photos):
    return sorted(str(p) for p in tiny_teacher_and_photos[1].iterdir())


def _find(views: MatchingViews, mode: str) -> int:
    return next(i for i in range(200) if views.spec(i).mode == mode)


def test_views_are_a_pure_function_of_their_index_and_never_repeat(photos):
    cfg = MatchSection(crop=32)
    a, b = MatchingViews(photos, cfg, seed=0, stage=0), MatchingViews(photos, cfg, seed=0, stage=0)
    first = [a[i]["image"] for i in range(40)]
    assert all(torch.equal(b[i]["image"], first[i]) for i in reversed(range(40)))  # any order, any instance
    assert all(x.shape == (3, 32, 32) and x.min() >= 0 and x.max() <= 1 for x in first)
    assert len({x.numpy().tobytes() for x in first}) == 40
    assert not torch.equal(MatchingViews(photos, cfg, seed=0, stage=1)[0]["image"], first[0])  # stages differ
    assert not torch.equal(MatchingViews(photos, cfg, seed=1, stage=0)[0]["image"], first[0])  # and seeds
    assert torch.isnan(a[0]["score"])
    modes = [a.spec(i).mode for i in range(200)]
    # mix 0.8, half CutMix: roughly 20 % / 40 % / 40 %
    assert 20 < modes.count("none") < 60 and modes.count("mixup") > 50 and modes.count("cutmix") > 50


def test_mixup_and_cutmix_compose_the_two_parts(photos):
    views = MatchingViews(photos, MatchSection(crop=32, distort=0.0), seed=0, stage=0)
    spec = views.spec(_find(views, "mixup"))
    one, two = views._render(spec.first), views._render(spec.second)
    assert torch.allclose(views.render(spec), spec.lam * one + (1 - spec.lam) * two, atol=1e-6)
    spec = views.spec(_find(views, "cutmix"))
    one, two, x = views._render(spec.first), views._render(spec.second), views.render(spec)
    left, top, w, h = spec.paste
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[top : top + h, left : left + w] = True
    assert torch.equal(x[:, inside], two[:, inside]) and torch.equal(x[:, ~inside], one[:, ~inside])
    assert spec.lam == pytest.approx(1 - w * h / 32**2)


def test_views_stage_trains_on_exactly_the_views_the_teacher_scores(
    tmp_path, rated_folder, tiny_teacher_and_photos, monkeypatch
):
    from kdiqa.cli import main
    from kdiqa.distill.response import ResponseDistill

    teacher, photo_dir = tiny_teacher_and_photos
    pool = f"[{{path: {photo_dir}}}, {{path: {rated_folder / 'labels.csv'}, split: train}}]"
    stages = """
  - {stage: soft, data: views, epochs: 2, views: 16}
  - {stage: task, data: labelled, epochs: 1, steps_per_epoch: 1}"""
    cfg = _views_config(tmp_path, rated_folder, teacher, pool, "{crop: 32}", stages)
    seen, original = [], ResponseDistill.teacher_targets

    def spy(self, batch, maps=True):
        if "t_score" not in batch and torch.isnan(batch["score"]).all():
            seen.append(batch["image"].clone())
        return original(self, batch, maps)

    monkeypatch.setattr(ResponseDistill, "teacher_targets", spy)
    assert main(["distill", "--config", str(cfg), "--quiet"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["total_steps"] == 2 * 2 + 1
    history = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [h.get("train_views") for h in history] == [8, 8, None]
    assert len(seen) == 4  # the teacher ran online on every view batch

    from kdiqa.config import load_config
    from kdiqa.distill.data import matching_images
    from kdiqa.distill.engine import DistillRunConfig
    from kdiqa.engine import labelled_splits

    run_cfg = load_config(DistillRunConfig, cfg)
    _, _, val_ds = labelled_splits(run_cfg.labelled)
    images = matching_images(run_cfg, val_ds)
    assert not {r.path for r in val_ds.rows} & set(images) and len(images) == 4 + 14  # photos + train minus val
    views = MatchingViews(images, run_cfg.matching, seed=0, stage=0)
    assert torch.equal(seen[3], torch.stack([views[i]["image"] for i in range(12, 16)]))  # epoch 1, second batch


def _views_config(tmp_path, rated_folder, teacher, pool: str, matching: str, stages: str, extra: str = "",
                  crop: int = 32) -> Path:  # fmt: skip
    """A tiny distillation config on views: pool sources, matching section and stages as YAML text."""
    cfg = tmp_path / "d.yaml"
    cfg.write_text(f"""
method: response
student: iqa_test_tiny
teacher: {teacher}
pool: {{sources: {pool}}}
matching: {matching}
labelled: {{dataset: "csv:{rated_folder / "labels.csv"}", crop: {crop}, batch_size: 4, workers: 0, val_fraction: 0.25}}
stages: {stages}
eval: {{mode: center, crop: 32}}
out_dir: {tmp_path / "run"}
threads: 1
{extra}""")
    return cfg


def test_match_cache_fills_by_shard_and_serves_the_run_without_the_teacher(
    tmp_path, rated_folder, tiny_teacher_and_photos, monkeypatch, capsys
):
    import kdiqa
    from kdiqa.cli import main
    from kdiqa.distill.match_cache import MatchCache, fill, stream_fingerprint
    from kdiqa.distill.response import ResponseDistill

    teacher, photo_dir = tiny_teacher_and_photos
    matching = f"{{crop: 32, seed: 7, cache: {tmp_path / 'views.sqlite'}}}"
    stages = "[{stage: soft, data: views, epochs: 2, views: 16}]"
    cfg = _views_config(tmp_path, rated_folder, teacher, f"[{{path: {photo_dir}}}]", matching, stages)
    assert main(["distill", "--config", str(cfg), "--quiet"]) == 2  # nothing stored yet
    assert "have no teacher score yet; fill it with `kdiqa match-cache`" in capsys.readouterr().err
    assert main(["match-cache", "--config", str(cfg), "--first", "4", "--workers", "0", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["scored_now"] == 4
    for shard, now in (("0/2", 6), ("1/2", 6)):  # two processes' worth of the rest, one after the other
        assert main(["match-cache", "--config", str(cfg), "--shard", shard, "--workers", "0", "--quiet"]) == 0
        assert json.loads(capsys.readouterr().out)["scored_now"] == now

    views = MatchingViews(sorted(str(p) for p in Path(photo_dir).iterdir()), MatchSection(crop=32), seed=7, stage=0)
    t = kdiqa.load(teacher)
    cache = MatchCache(tmp_path / "views.sqlite", stream_fingerprint(t, views))
    stored = cache.scores(16)
    cache.close()
    with torch.no_grad():
        online = t(torch.stack([views[i]["image"] for i in range(16)]))
    assert torch.allclose(stored, online, atol=1e-5)
    assert fill(t, views, tmp_path / "views.sqlite", 16, workers=0, progress=False)["scored_now"] == 0  # resumes
    other = MatchingViews(views.images, views.cfg, seed=7, stage=1)  # a second views stage: its own stream
    assert fill(t, other, tmp_path / "views.sqlite", 4, workers=0, progress=False)["scored_now"] == 4
    cache = MatchCache(tmp_path / "views.sqlite", stream_fingerprint(t, other))
    with torch.no_grad():
        assert torch.allclose(cache.scores(4), t(torch.stack([other[i]["image"] for i in range(4)])), atol=1e-5)
    with pytest.raises(ValueError, match=r"4 of the stage's 8 views .* have no teacher score yet"):
        cache.scores(8)
    cache.close()
    cache = MatchCache(tmp_path / "views.sqlite", stream_fingerprint(t, views))
    assert torch.equal(cache.scores(16), stored)  # the first stream is untouched
    cache.close()

    seen, original = [], ResponseDistill.teacher_targets
    monkeypatch.setattr(
        ResponseDistill,
        "teacher_targets",
        lambda self, b, maps=True: seen.append("t_score" in b) or original(self, b, maps),
    )
    assert main(["distill", "--config", str(cfg), "--quiet"]) == 0
    assert seen == [True] * 4  # every batch came with the stored scores of exactly its views
    capsys.readouterr()
    hints = ["distill", "--config", str(cfg), "--quiet", "--set", "method=hints", "--set", "resume=false"]
    assert main(hints) == 2 and "matching.cache holds scores only" in capsys.readouterr().err


def test_joint_views_stage_pairs_each_view_batch_with_labelled_mos(
    tmp_path, rated_folder, tiny_teacher_and_photos, monkeypatch
):
    from kdiqa.cli import main
    from kdiqa.distill.response import ResponseDistill

    teacher, photo_dir = tiny_teacher_and_photos
    stages = "[{stage: joint, data: views, epochs: 2, views: 24}]"
    pool = f"[{{path: {photo_dir}}}]"
    cfg = _views_config(tmp_path, rated_folder, teacher, pool, "{crop: 32}", stages, "distill: {alpha: 0.25}", crop=40)
    calls, original = [], ResponseDistill.stage_losses

    def spy(self, batch, stage, step):
        pred, losses = original(self, batch, stage, step)
        calls.append((stage, batch["image"].shape[-1], torch.isnan(batch["score"]).all().item(), losses))
        return pred, losses

    totals, forward = [], ResponseDistill.forward_train

    def total(*args):
        out = forward(*args)
        totals.append(out[1])
        return out

    monkeypatch.setattr(ResponseDistill, "stage_losses", spy)
    monkeypatch.setattr(ResponseDistill, "forward_train", total)
    assert main(["distill", "--config", str(cfg), "--quiet"]) == 0
    history = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["train_views"] for h in history] == [12, 12]  # 3 steps of 4 views per epoch
    # every step: the views (32 px, no MOS) as the soft stage, the labelled crops (40 px, MOS) as the task stage
    assert [(s, size, unrated) for s, size, unrated, _ in calls] == [("soft", 32, True), ("task", 40, False)] * 6
    for (_, _, _, soft), (_, _, _, task), total in zip(calls[::2], calls[1::2], totals, strict=True):
        assert set(total) == {"soft", "soft_rank", "task", "task_rank", "loss"}
        assert torch.allclose(total["soft"], 0.75 * soft["soft"]) and torch.allclose(total["task"], 0.25 * task["task"])
        assert torch.allclose(total["loss"], sum(v for k, v in total.items() if k != "loss"))


def test_paired_batches_cycle_the_labelled_set_beside_the_views():
    from torch.utils.data import BatchSampler

    from kdiqa.distill.data import PairedBatches

    views = BatchSampler(range(100, 128), 4, drop_last=True)  # 7 batches of views
    paired = list(PairedBatches(views, list(range(10)), 4, torch.Generator().manual_seed(0)))
    assert len(paired) == 7 and [[v for v, _ in b] for b in paired] == [list(b) for b in views]
    labelled = [[m for _, m in b] for b in paired]
    # 10 labelled items make 2 full batches per pass: each pass uses 8 distinct items, then reshuffles
    for one_pass in (labelled[0:2], labelled[2:4], labelled[4:6]):
        assert len({m for b in one_pass for m in b}) == 8
    assert labelled[0:2] != labelled[2:4]
    with pytest.raises(ValueError, match="3 labelled items make no batch of 4"):
        PairedBatches(views, [0, 1, 2], 4, torch.Generator())


def test_match_cache_upgrades_a_one_stream_file(tmp_path):
    import sqlite3

    from kdiqa.distill.match_cache import MatchCache

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE scores (idx INTEGER PRIMARY KEY, score REAL NOT NULL);
        INSERT INTO meta VALUES ('stream', 'abc');
        INSERT INTO scores VALUES (0, 0.25), (1, 0.5), (2, 0.75);
    """)
    conn.commit()
    conn.close()
    cache = MatchCache(path, "abc")
    assert cache.scores(3).tolist() == [0.25, 0.5, 0.75]
    cache.close()
    with pytest.raises(ValueError, match="3 of the stage's 3 views \\(stream other\\)"):
        MatchCache(path, "other").scores(3)
    tables = {n for (n,) in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"view_scores"}


def _decoded_size(path: str) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return im.width * im.height * 3


def test_kept_decoded_images_give_the_same_views_within_their_budget(photos, monkeypatch):
    import kdiqa.distill.matching as matching

    decoded = []
    real = matching.load_image
    monkeypatch.setattr(matching, "load_image", lambda p: decoded.append(p) or real(p))
    expected = [MatchingViews(photos, MatchSection(crop=32), seed=3, stage=0)[i]["image"] for i in range(30)]
    n_plain = len(decoded)
    decoded.clear()
    kept = MatchingViews(photos, MatchSection(crop=32, keep_decoded_mb=1), seed=3, stage=0)
    assert all(torch.equal(kept[i]["image"], expected[i]) for i in range(30))
    assert len(decoded) == len(photos) < n_plain  # each source decoded once
    assert kept._decoded_bytes == sum(map(_decoded_size, photos)) <= 2**20
    # a budget below two images keeps the most recently used one only
    sizes = [_decoded_size(p) for p in photos[:2]]
    budget = (max(sizes) + min(sizes) // 2) / 2**20
    small = MatchingViews(photos, MatchSection(crop=32, keep_decoded_mb=budget), seed=3, stage=0)
    small._image(0), small._image(1), small._image(1)
    assert list(small._decoded) == [1] and small._decoded_bytes == sizes[1]
    assert decoded[-2:] == photos[:2]  # the second look at image 1 was served from memory


def test_keeping_decoded_images_changes_neither_the_stream_nor_the_recipe(tiny_teacher_and_photos, photos):
    from kdiqa.checkpoint import load_model
    from kdiqa.distill.match_cache import stream_fingerprint
    from kdiqa.runs import config_changes

    teacher = load_model(tiny_teacher_and_photos[0])
    plain, kept = MatchSection(crop=32), MatchSection(crop=32, keep_decoded_mb=512)
    fingerprints = {stream_fingerprint(teacher, MatchingViews(photos, c, seed=0, stage=0)) for c in (plain, kept)}
    assert len(fingerprints) == 1  # a stored teacher-score file serves both
    other = MatchingViews(photos, MatchSection(crop=48), seed=0, stage=0)
    assert stream_fingerprint(teacher, other) not in fingerprints  # while a setting of the views does change it
    assert config_changes({"matching": {"keep_decoded_mb": 0}}, {"matching": {"keep_decoded_mb": 512}}) == []


def test_a_view_seeds_the_cpu_generator_only(photos, monkeypatch):
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    seeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", seeded.append)
    MatchingViews(photos, MatchSection(crop=32), seed=0, stage=0).spec(0)
    assert torch.equal(torch.rand(1), before)  # the caller's random state is untouched
    assert seeded == []  # and no CUDA generator is seeded (nor, without CUDA, a seeding call queued) per view
