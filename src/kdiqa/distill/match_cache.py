"""The teacher's scores on a function-matching view stream, computed once and shared by every run of it.

On a CPU the teacher's forward pass costs more than a small student's forward and backward. Views are a
pure function of ``(stream seed, stage, index)`` (:mod:`kdiqa.distill.matching`), so the teacher's score of
view ``i`` can be stored by index alone — never the pixels: a run re-renders the view and reads the score.
Every run on the same stream (methods, student seeds with a shared ``matching.seed``, students) then trains
without the teacher. Scores only: the feature methods need the teacher's maps and run it online.

The store is SQLite (one row per view, committed a batch per transaction): a job killed at any moment,
even ``kill -9``, resumes with exactly the rows of an uninterrupted one, and ``shard=(i, n)`` fills the
indices ``≡ i (mod n)`` so several processes can share the work. Rows are keyed by the stream's
fingerprint (teacher weights, source images, view settings, seed, stage) and the view's index, so one file
holds the streams of every views stage of a run, and a run never reads another stream's scores.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..models.iqa import IQAModel
from .cache import teacher_fingerprint
from .matching import MatchingViews

SCHEMA = """
CREATE TABLE IF NOT EXISTS view_scores (
    stream TEXT NOT NULL, idx INTEGER NOT NULL, score REAL NOT NULL, PRIMARY KEY (stream, idx)
) WITHOUT ROWID;
"""


def _upgrade(conn: sqlite3.Connection) -> None:
    """Moves a one-stream file (tables ``meta`` with its fingerprint and ``scores``) into ``view_scores``."""
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not {"meta", "scores"} <= tables:
        return
    (stream,) = conn.execute("SELECT value FROM meta WHERE key = 'stream'").fetchone()
    conn.execute("INSERT OR IGNORE INTO view_scores SELECT ?, idx, score FROM scores", (stream,))
    conn.execute("DROP TABLE scores")
    conn.execute("DROP TABLE meta")


def stream_fingerprint(teacher: IQAModel, views: MatchingViews) -> str:
    """A short hash of everything that fixes the views and the teacher's scores of them."""
    parts = {
        "teacher": teacher_fingerprint(teacher),
        "images": hashlib.sha256("\n".join(views.images).encode()).hexdigest()[:16],
        # how views look (not the stream's seed, kept apart, nor settings that only make it faster)
        "matching": {k: v for k, v in asdict(views.cfg).items() if k not in ("seed", "cache", "keep_decoded_mb")},
        "seed": views.seed,
        "stage": views.stage,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=list).encode()).hexdigest()[:16]


class MatchCache:
    """Read and write access to one stream's scores in ``path`` (created if missing; other streams in the file
    are left alone)."""

    def __init__(self, path: str | Path, fingerprint: str) -> None:
        self.path, self.stream = Path(path), fingerprint
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), timeout=60)
        with self.conn:  # processes opening the file together: one creates or upgrades it, the others wait
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(SCHEMA)
            _upgrade(self.conn)

    def done(self) -> set[int]:
        return {i for (i,) in self.conn.execute("SELECT idx FROM view_scores WHERE stream = ?", (self.stream,))}

    def scores(self, n: int) -> torch.Tensor:
        """The scores of views ``0 .. n - 1``; a missing one is an error that says how to fill it."""
        out = torch.full((n,), float("nan"))
        rows = self.conn.execute("SELECT idx, score FROM view_scores WHERE stream = ? AND idx < ?", (self.stream, n))
        for i, s in rows:
            out[i] = s
        missing = int(torch.isnan(out).sum())
        if missing:
            raise ValueError(f"{self.path}: {missing} of the stage's {n} views (stream {self.stream}) have no "
                             "teacher score yet; fill it with `kdiqa match-cache`")  # fmt: skip
        return out

    def put(self, indices: list[int], scores: list[float]) -> None:
        with self.conn:  # one transaction: a kill leaves whole batches or nothing
            rows = [(self.stream, i, s) for i, s in zip(indices, scores, strict=True)]
            self.conn.executemany("INSERT OR REPLACE INTO view_scores VALUES (?, ?, ?)", rows)

    def close(self) -> None:
        self.conn.close()


@torch.no_grad()
def fill(
    teacher: IQAModel,
    views: MatchingViews,
    path: str | Path,
    n: int,
    shard: tuple[int, int] = (0, 1),
    batch_size: int = 64,
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Scores views ``0 .. n - 1`` of ``views`` (those of ``shard`` not stored yet); returns a summary."""
    i, k = shard
    if not 0 <= i < k:
        raise ValueError(f"shard must be i/n with 0 <= i < n, got {i}/{k}")
    cache = MatchCache(path, stream_fingerprint(teacher, views))
    stored = cache.done()
    todo = [j for j in range(i, n, k) if j not in stored]
    teacher.eval().to(memory_format=torch.channels_last)
    device = next(teacher.parameters()).device
    loader = DataLoader(views, batch_size=batch_size, sampler=todo, num_workers=workers)
    bar = tqdm(total=len(todo), desc="teacher on views", unit="view", disable=not progress, file=sys.stderr)
    for b, batch in enumerate(loader):
        x = batch["image"].to(device).contiguous(memory_format=torch.channels_last)
        cache.put(todo[b * batch_size : b * batch_size + len(x)], teacher(x).float().cpu().tolist())
        bar.update(len(x))
    bar.close()
    total = len(cache.done() & set(range(n)))
    cache.close()
    return {"views": n, "shard": f"{i}/{k}", "scored_now": len(todo), "stored": total, "complete": total == n}
