"""Unlabelled pools and teacher soft labels: determinism, splits, kill -9 resume, shard merge."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import synthetic_photo

import kdiqa
from kdiqa.checkpoint import file_sha256, save_model
from kdiqa.data.pools import PoolConfig, PoolSource, PoolViews, build_items, crop_boxes, pool_fingerprint
from kdiqa.softlabels import load_soft_labels, merge_shards, pseudo_label, table


@pytest.fixture
def photo_dir(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(6):
        synthetic_photo((80, 64), seed=i).save(d / f"p{i}.png")
    return d


@pytest.fixture
def teacher_dir(tmp_path):
    torch_seed = __import__("torch").manual_seed(0)
    assert torch_seed is not None
    folder = tmp_path / "teacher"
    save_model(kdiqa.create_model("iqa_test_tiny"), folder)
    return folder


def _cfg(photo_dir, **kw):
    return PoolConfig(sources=[PoolSource(str(photo_dir), distort=True)], **kw)


def test_pool_items_deterministic_and_reference_disjoint(photo_dir, rated_folder):
    cfg = PoolConfig(
        sources=[
            PoolSource(str(photo_dir), distort=True),
            PoolSource(str(rated_folder / "labels.csv"), distort=False, split="test"),
        ],
        per_image=3,
        val_fraction=0.34,
        seed=1,
    )
    items = build_items(cfg)
    assert len(items) == 6 * 4 + 6  # 6 photos × (clean + 3 distorted) + 6 CLIVE-like test rows undistorted
    assert [it.item_id for it in items] == list(range(len(items)))
    assert items == build_items(cfg) and pool_fingerprint(items) == pool_fingerprint(build_items(cfg))
    assert pool_fingerprint(build_items(PoolConfig(**{**cfg.__dict__, "seed": 2}))) != pool_fingerprint(items)
    val_refs = {it.path for it in items if it.split == "val"}
    train_refs = {it.path for it in items if it.split == "train"}
    assert val_refs and not val_refs & train_refs
    distorted = [it for it in items if it.dist_type]
    assert all(1 <= it.dist_level <= 5 for it in distorted) and len({it.dist_type for it in distorted}) > 3
    a, b = distorted[0].render(), distorted[0].render()
    assert np.array_equal(np.asarray(a), np.asarray(b)) and a.size == (80, 64)


def test_pool_errors(tmp_path, photo_dir):
    with pytest.raises(FileNotFoundError, match=r"neither a folder nor a \.csv"):
        build_items(PoolConfig(sources=[PoolSource(str(tmp_path / "nope.txt"))]))
    with pytest.raises(KeyError, match="unknown distortion"):
        build_items(_cfg(photo_dir, types=["jpgg"]))


def test_crop_boxes_and_views(photo_dir):
    boxes = crop_boxes(100, 80, 32, 3, seed=0)
    assert boxes[0] == (34, 24, 66, 56) and len(boxes) == 3
    assert all(x0 >= 0 and x1 <= 100 and y0 >= 0 and y1 <= 80 and x1 - x0 == 32 for x0, y0, x1, y1 in boxes)
    assert crop_boxes(20, 20, 32, 3, seed=0) == [(0, 0, 20, 20)]
    _, views, bx, err = PoolViews(build_items(_cfg(photo_dir, per_image=1)), crop=32, views=2, flip=True)[1]
    assert err is None and views.shape == (4, 3, 32, 32) and len(bx) == 2


def _run(teacher_dir, items, out, **kw):
    teacher = kdiqa.load(teacher_dir)
    return pseudo_label(
        teacher, file_sha256(teacher_dir / "model.safetensors"), items, out, progress=False, workers=0, **kw
    )


def test_soft_labels_rows_failures_and_resume_checks(tmp_path, photo_dir, teacher_dir):
    (photo_dir / "broken.png").write_text("nope")
    items = build_items(_cfg(photo_dir, per_image=2))
    out = tmp_path / "labels.sqlite"
    summary = _run(teacher_dir, items, out, crop=32, views=3, batch_size=5)
    assert summary["labelled"] + summary["failed"] == len(items) and summary["failed"] == 3
    rows = table(out)
    assert len(rows) == len(items) - 3 and all(r["n_views"] == 3 and len(r["boxes"]) == 3 for r in rows)
    r = rows[1]
    assert r["score_mean"] == pytest.approx(r["scores"].mean()) and r["score_std"] == pytest.approx(r["scores"].std())
    assert r["dist_type"] is not None and r["dist_seed"] is not None
    with sqlite3.connect(out) as c:
        assert {e for (e,) in c.execute("SELECT error FROM failures")} == {
            f"{photo_dir / 'broken.png'}: not an image file (format not recognised)"
        }
        meta = dict(c.execute("SELECT * FROM meta"))
    assert meta["teacher_sha256"] == file_sha256(teacher_dir / "model.safetensors")
    again = _run(teacher_dir, items, out, crop=32, views=3, batch_size=5)
    assert again["labelled"] == 0 and again["already_done"] == len(items)
    with pytest.raises(ValueError, match="views is '3' but this job has '2'"):
        _run(teacher_dir, items, out, crop=32, views=2)
    assert len(load_soft_labels(out)) == len(items) - 3


def test_shards_merge_to_the_single_run(tmp_path, photo_dir, teacher_dir):
    items = build_items(_cfg(photo_dir, per_image=3))
    single = tmp_path / "single.sqlite"
    _run(teacher_dir, items, single, crop=32, batch_size=4)
    shards = [tmp_path / f"s{i}.sqlite" for i in range(3)]
    for i, s in enumerate(shards):
        _run(teacher_dir, items, s, crop=32, batch_size=4, shard=(i, 3))
    with pytest.raises(ValueError, match="incomplete: 8 of 24 items missing"):
        merge_shards(shards[:2], tmp_path / "partial.sqlite")
    assert not (tmp_path / "partial.sqlite").exists()
    merged = tmp_path / "merged.sqlite"
    assert merge_shards(shards, merged)["items"] == 24
    a, b = table(single), table(merged)
    assert [r["item_id"] for r in a] == [r["item_id"] for r in b] == list(range(24))
    for ra, rb in zip(a, b, strict=True):
        assert ra["path"] == rb["path"] and ra["boxes"] == rb["boxes"]
        np.testing.assert_allclose(ra["scores"], rb["scores"], atol=1e-5)
    with pytest.raises(ValueError, match="the same shard appears twice"):
        merge_shards([shards[0], shards[0], shards[1], shards[2]], tmp_path / "dup.sqlite")
    overlap = tmp_path / "overlap.sqlite"  # a 0/1 run overlaps every shard of 3
    _run(teacher_dir, items, overlap, crop=32, batch_size=4, shard=(0, 1))
    with pytest.raises(ValueError, match="already present in another shard"):
        merge_shards([shards[0], overlap], tmp_path / "dup.sqlite")
    assert not (tmp_path / "dup.sqlite").exists()
    other = tmp_path / "other_teacher"
    save_model(kdiqa.create_model("iqa_test_tiny"), other)
    odd = tmp_path / "odd.sqlite"
    _run(other, items, odd, crop=32, batch_size=4, shard=(2, 3))
    with pytest.raises(ValueError, match="teacher_sha256"):
        merge_shards([shards[0], shards[1], odd], tmp_path / "mixed.sqlite")


def test_kill_9_then_resume_gives_the_uninterrupted_rows(tmp_path, photo_dir, teacher_dir):
    for i in range(6, 16):
        synthetic_photo((96, 96), seed=i).save(photo_dir / f"p{i}.png")
    pool_yaml = tmp_path / "pool.yaml"
    pool_yaml.write_text(f"sources:\n  - path: {photo_dir}\nper_image: 7\nseed: 3\n")
    cmd = [
        sys.executable,
        "-m",
        "kdiqa.cli",
        "pseudo-label",
        "--teacher",
        str(teacher_dir),
        "--pool",
        str(pool_yaml),
        "--crop",
        "0",
        "--views",
        "1",
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    victim = tmp_path / "killed.sqlite"
    proc = subprocess.Popen([*cmd, "--out", str(victim)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows_at_kill, deadline = 0, time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if victim.exists():
            try:
                with sqlite3.connect(victim, timeout=0.05) as c:
                    rows_at_kill = c.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
            except sqlite3.OperationalError:
                rows_at_kill = 0  # schema not created yet, or a write in progress
            if rows_at_kill >= 6:
                os.kill(proc.pid, signal.SIGKILL)
                break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the job finished before it could be killed"
    assert 6 <= rows_at_kill < 128
    subprocess.run([*cmd, "--out", str(victim)], env=env, check=True, capture_output=True)
    clean = tmp_path / "clean.sqlite"
    subprocess.run([*cmd, "--out", str(clean)], env=env, check=True, capture_output=True)
    a, b = table(victim), table(clean)
    assert len(a) == len(b) == 16 * 8
    assert [r["item_id"] for r in a] == [r["item_id"] for r in b] == list(range(128))
    for ra, rb in zip(a, b, strict=True):
        assert (ra["path"], ra["dist_type"], ra["dist_level"], ra["dist_seed"]) == (
            rb["path"],
            rb["dist_type"],
            rb["dist_level"],
            rb["dist_seed"],
        )
        np.testing.assert_allclose(ra["scores"], rb["scores"], atol=1e-5)


def test_materialized_pool_matches_on_the_fly(tmp_path, photo_dir, teacher_dir):
    from kdiqa.data.pools import cached_path, materialize

    items = build_items(_cfg(photo_dir, per_image=2))
    cache = tmp_path / "cache"
    summary = materialize(items, cache, workers=0, progress=False)
    assert summary["written"] == 12 and not summary["errors"]
    assert materialize(items, cache, workers=0, progress=False)["written"] == 0  # resumable: nothing left
    for it in items:
        if it.dist_type:
            assert cached_path(cache, it.item_id).is_file()
            assert np.array_equal(np.asarray(it.render(cache)), np.asarray(it.render()))
    on_the_fly, cached = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    _run(teacher_dir, items, on_the_fly, crop=32)
    _run(teacher_dir, items, cached, crop=32, cache_dir=cache)
    for ra, rb in zip(table(on_the_fly), table(cached), strict=True):
        np.testing.assert_allclose(ra["scores"], rb["scores"], atol=1e-6)
    with pytest.raises(ValueError, match="holds another pool"):
        materialize(build_items(_cfg(photo_dir, per_image=1)), cache, workers=0, progress=False)


def test_soft_label_dataset_reads_back_targets(tmp_path, photo_dir, teacher_dir):
    from kdiqa.data.transforms import TrainTransform
    from kdiqa.softlabels import SoftLabelDataset

    items = build_items(_cfg(photo_dir, per_image=2, val_fraction=0.34))
    out = tmp_path / "l.sqlite"
    _run(teacher_dir, items, out, crop=32)
    ds = SoftLabelDataset(out, items, TrainTransform(32), split="train")
    assert len(ds) == sum(it.split == "train" for it in items) == 12
    sample = ds[0]
    assert sample["image"].shape == (3, 32, 32)
    assert sample["score"].item() == pytest.approx(load_soft_labels(out)[sample["index"]][0])
    with pytest.raises(ValueError, match="another pool"):
        SoftLabelDataset(out, build_items(_cfg(photo_dir, per_image=1)), TrainTransform(32))
