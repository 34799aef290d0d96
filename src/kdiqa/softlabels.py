"""Teacher soft labels for an unlabelled pool (``kdiqa pseudo-label``), stored in SQLite.

One row per pool item: its identity (path, distortion type/level/seed, crop boxes), the teacher's
normalised scores per view with their mean and std. The ``meta`` table records the teacher
checkpoint's SHA-256, the pool's fingerprint, the views, and the shard.

Resumable: rows are committed a batch per transaction, keyed by ``item_id``; a restarted job (even
after ``kill -9``) skips committed items and redoes the rest, so it ends with exactly the rows of an
uninterrupted run: no duplicates, no gaps. Shardable: ``shard=(i, n)`` takes the items with
``item_id % n == i``; :func:`merge_shards` checks that the shards belong together and cover the pool.
SQLite is in Python's standard library, so a soft-label file needs no extra dependency to read.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import __version__
from .data.pools import PoolItem, PoolViews, pool_fingerprint
from .models.iqa import IQAModel
from .predict import TorchBackend
from .runtime.predictor import predict_views

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
    item_id INTEGER PRIMARY KEY, path TEXT NOT NULL, dist_type TEXT, dist_level INTEGER, dist_seed INTEGER,
    split TEXT NOT NULL, boxes TEXT NOT NULL, scores TEXT NOT NULL, score_mean REAL NOT NULL,
    score_std REAL NOT NULL, n_views INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS failures (item_id INTEGER PRIMARY KEY, path TEXT NOT NULL, error TEXT NOT NULL);
"""
# Keys that must agree between a resumed run, or between shards, and the job at hand.
IDENTITY_KEYS = ("teacher_sha256", "pool_fingerprint", "n_items", "crop", "views", "flip")


def _connect(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path))
    conn.executescript(SCHEMA)
    return conn


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM meta").fetchall())


def read_meta_file(path: str | Path) -> dict[str, str]:
    """The ``meta`` table of a soft-label file (teacher SHA-256, pool fingerprint, views ...)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such soft-label file (write it with `kdiqa pseudo-label`)")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return read_meta(conn)
    finally:
        conn.close()


def _check_meta(existing: dict[str, str], wanted: dict[str, str], where: str) -> None:
    for key in (*IDENTITY_KEYS, "shard"):
        if key in existing and key in wanted and existing[key] != wanted[key]:
            raise ValueError(
                f"{where}: {key} is {existing[key]!r} but this job has {wanted[key]!r}; use a new output file"
            )


def shard_items(items: list[PoolItem], shard: tuple[int, int]) -> list[PoolItem]:
    i, n = shard
    if not 0 <= i < n:
        raise ValueError(f"shard must be i/n with 0 <= i < n, got {i}/{n}")
    return [it for it in items if it.item_id % n == i]


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    return i, n


@torch.no_grad()
def _job_meta(teacher: IQAModel, sha: str, items: list[PoolItem], crop, views: int, flip: bool, shard) -> dict:
    """What identifies a labelling job (checked on resume and merge) and describes its scores."""
    return {
        "teacher_sha256": sha,
        "pool_fingerprint": pool_fingerprint(items),
        "n_items": str(len(items)),
        "crop": str(crop),
        "views": str(views),
        "flip": str(flip),
        "shard": f"{shard[0]}/{shard[1]}",
        "teacher": teacher.name,
        "score_scale": "normalised [0,1]",
        "teacher_score_range": json.dumps(list(teacher.cfg.score_range)),
        "kdiqa_version": __version__,
    }


def _row(it: PoolItem, boxes, s: np.ndarray) -> tuple:
    """One ``labels`` row: the item's identity, its view boxes and the teacher's per-view scores."""
    scores = json.dumps([float(x) for x in s])
    return (it.item_id, it.path, it.dist_type, it.dist_level, it.dist_seed, it.split, json.dumps(boxes), scores,
            float(s.mean()), float(s.std()), len(s))  # fmt: skip


def pseudo_label(
    teacher: IQAModel,
    teacher_sha256: str,
    items: list[PoolItem],
    out: str | Path,
    crop: int | None = 384,
    views: int = 1,
    flip: bool = False,
    shard: tuple[int, int] = (0, 1),
    batch_size: int = 16,
    workers: int = 1,
    progress: bool = True,
    max_batches: int | None = None,
    cache_dir: str | Path | None = None,
) -> dict:
    """Scores every item of the (sharded) pool with ``teacher`` and writes/extends the SQLite file.

    Returns a summary: items done in this call, already present, failed, and images/s.
    ``max_batches`` stops early. ``cache_dir``: read distorted items from a :func:`materialize` folder.
    """
    backend = TorchBackend(teacher)  # the predictor's batching of views by size
    meta = _job_meta(teacher, teacher_sha256, items, crop, views, flip, shard)
    conn = _connect(out)
    _check_meta(read_meta(conn), meta, str(out))
    with conn:
        conn.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", meta.items())
    done = {r[0] for r in conn.execute("SELECT item_id FROM labels UNION SELECT item_id FROM failures")}
    mine = shard_items(items, shard)
    todo = [it for it in mine if it.item_id not in done]
    by_id = {it.item_id: it for it in todo}
    loader = DataLoader(
        PoolViews(todo, crop, views, flip, cache_dir),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=list,  # views of different sizes cannot be stacked
    )
    bar = tqdm(total=len(todo), desc="pseudo-label", unit="img", disable=not progress, file=sys.stderr)
    t0, n_done, n_failed, forward_s = time.perf_counter(), 0, 0, 0.0
    for b, batch in enumerate(loader):
        if max_batches is not None and b >= max_batches:
            break
        ok = [(i, v, bx) for i, v, bx, err in batch if err is None]
        fails = [(i, by_id[i].path, err) for i, _, _, err in batch if err is not None]
        tf = time.perf_counter()
        scores = predict_views(backend, [(i, v.numpy()) for i, v, _ in ok])
        forward_s += time.perf_counter() - tf
        rows = [_row(by_id[item_id], boxes, scores[item_id]) for item_id, _, boxes in ok]
        with conn:  # one transaction per batch: a kill leaves whole batches or nothing
            conn.executemany("INSERT INTO labels VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
            conn.executemany("INSERT INTO failures VALUES (?,?,?)", fails)
        n_done, n_failed = n_done + len(rows), n_failed + len(fails)
        bar.update(len(batch))
    bar.close()
    conn.close()
    elapsed = time.perf_counter() - t0
    return {
        "items_in_shard": len(mine),
        "already_done": len(mine) - len(todo),
        "labelled": n_done,
        "failed": n_failed,
        "seconds": round(elapsed, 2),
        "images_per_s": round(n_done / elapsed, 2) if elapsed > 0 else None,
        "forward_seconds": round(forward_s, 2),
    }


def merge_shards(shards: list[str | Path], out: str | Path) -> dict:
    """Merges shard files into ``out`` after checking they share teacher/pool/views and cover the pool."""
    metas = []
    for s in shards:
        if not Path(s).is_file():
            raise FileNotFoundError(f"shard file not found: {s}")
        with sqlite3.connect(str(s)) as c:
            metas.append(read_meta(c))
    first = metas[0]
    for s, m in zip(shards[1:], metas[1:], strict=True):
        for key in IDENTITY_KEYS:
            if m.get(key) != first.get(key):
                raise ValueError(f"{s}: {key} {m.get(key)!r} differs from {shards[0]}'s {first.get(key)!r}")
    names = [m.get("shard") for m in metas]
    if len(set(names)) != len(names):
        raise ValueError(f"the same shard appears twice: {names}")
    n_items = int(first["n_items"])
    if Path(out).exists():
        raise FileExistsError(f"{out} exists; merge writes a new file")
    conn = _connect(out)
    try:
        for s in shards:
            conn.execute("ATTACH DATABASE ? AS shard", (str(s),))
            with conn:  # PRIMARY KEY: an item labelled in two shards fails here
                conn.execute("INSERT INTO labels SELECT * FROM shard.labels")
                conn.execute("INSERT INTO failures SELECT * FROM shard.failures")
            conn.execute("DETACH DATABASE shard")
    except sqlite3.IntegrityError as exc:
        conn.close()
        Path(out).unlink()
        raise ValueError(f"{s}: items already present in another shard ({exc})") from exc
    with conn:
        merged_meta = {**first, "shard": "merged", "merged_from": json.dumps([str(s) for s in shards])}
        conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", merged_meta.items())
    ids = {r[0] for r in conn.execute("SELECT item_id FROM labels UNION ALL SELECT item_id FROM failures")}
    conn.close()
    missing = sorted(set(range(n_items)) - ids)
    if missing:
        Path(out).unlink()
        raise ValueError(
            f"shards are incomplete: {len(missing)} of {n_items} items missing "
            f"(first: {missing[:10]}); finish those shards and merge again"
        )
    return {"items": n_items, "shards": len(shards), "out": str(out)}


def rank_file(out: str | Path, rank: int, world: int) -> Path:
    """Where process ``rank`` of ``world`` writes its shard of ``out`` under torchrun.

    Example:
        >>> rank_file("runs/soft.sqlite", 1, 4).name
        'soft.rank1of4.sqlite'
    """
    out = Path(out)
    return out.with_name(f"{out.stem}.rank{rank}of{world}{out.suffix}")


def merge_rank_files(out: str | Path, world: int) -> dict:
    """Merges the ``world`` rank files of ``out`` (:func:`rank_file`) into ``out`` (:func:`merge_shards`'s checks).

    The merge is written beside ``out`` and swapped in, so running the job again (to resume it) merges again; an
    ``out`` that is not a merge of shards is never replaced.
    """
    out = Path(out)
    if out.is_file() and read_meta_file(out).get("shard") != "merged":
        raise FileExistsError(f"{out} exists and is not a merge of shards; choose another --out")
    tmp = out.with_name(out.name + ".merging")
    tmp.unlink(missing_ok=True)
    summary = merge_shards([rank_file(out, r, world) for r in range(world)], tmp)
    os.replace(tmp, out)
    return {**summary, "out": str(out)}


def load_soft_labels(path: str | Path) -> dict[int, tuple[float, float]]:
    """``item_id → (mean, std)`` of the teacher's normalised scores."""
    with sqlite3.connect(str(path)) as conn:
        return {i: (m, s) for i, m, s in conn.execute("SELECT item_id, score_mean, score_std FROM labels")}


def table(path: str | Path) -> list[dict]:
    """All label rows as dicts (boxes and scores decoded)."""
    with sqlite3.connect(str(path)) as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM labels ORDER BY item_id")]
    for r in rows:
        r["boxes"], r["scores"] = json.loads(r["boxes"]), np.asarray(json.loads(r["scores"]))
    return rows


class SoftLabelDataset(torch.utils.data.Dataset):
    """Pool items with their teacher soft labels, as training data for a student.

    Each item: ``{"image": transformed view, "score": teacher mean (normalised), "score_std", "index"}``.
    Rows come from a soft-label file; images are re-rendered from the pool items (or a cache).

    Args:
        path: the SQLite file written by :func:`pseudo_label` (or :func:`merge_shards`).
        items: the pool's items (``build_items`` of the same pool config; checked by fingerprint).
        transform: e.g. :class:`~kdiqa.data.transforms.TrainTransform`.
        split: keep only items of this pool split ("train"/"val"), or all when None.
        cache_dir: a :func:`~kdiqa.data.pools.materialize` folder.
    """

    def __init__(self, path, items: list[PoolItem], transform, split: str | None = "train", cache_dir=None) -> None:
        with sqlite3.connect(str(path)) as conn:
            meta = read_meta(conn)
            rows = conn.execute("SELECT item_id, score_mean, score_std FROM labels ORDER BY item_id").fetchall()
        if meta.get("pool_fingerprint") != pool_fingerprint(items):
            raise ValueError(f"{path} was made for another pool (fingerprint {meta.get('pool_fingerprint')})")
        by_id = {it.item_id: it for it in items}
        self.rows = [(by_id[i], m, s) for i, m, s in rows if split is None or by_id[i].split == split]
        self.transform, self.cache_dir = transform, cache_dir

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        item, mean, std = self.rows[i]
        return {
            "image": self.transform(item.render(self.cache_dir)),
            "score": torch.tensor(mean, dtype=torch.float32),
            "score_std": torch.tensor(std, dtype=torch.float32),
            "index": item.item_id,
        }
