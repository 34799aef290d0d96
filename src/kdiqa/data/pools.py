"""Unlabelled image pools: folders or CSVs of images, optionally expanded with synthetic distortions.

A pool is a deterministic list of :class:`PoolItem` (source image + distortion type/level/seed): the
same config always gives the same items in the same order with the same ``item_id``, which is what
makes soft-label jobs resumable and shardable. Train/validation splits are disjoint by source image.

Example:
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(3):
    ...     Image.new("RGB", (32, 32), (i * 80, 0, 0)).save(d / f"{i}.png")
    >>> cfg = PoolConfig(sources=[PoolSource(str(d), distort=True)], per_image=2, include_clean=True)
    >>> items = build_items(cfg)
    >>> len(items), items[0].dist_type, items[1].dist_type is not None
    (9, None, True)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch.utils.data import Dataset

from ..paths import resolve
from .datasets import read_csv
from .distortions import apply_distortion, list_distortions
from .io import is_image_file, load_image


@dataclass
class PoolSource:
    """A folder (recursive) or a CSV with an ``image`` column (relative to the CSV's folder).

    ``path`` may start with ``data:`` (relative to the data root, see :mod:`kdiqa.paths`).
    """

    path: str
    distort: bool = True  # add synthetic distortions to these images
    split: str | None = None  # for a CSV with a split column: keep only this split


@dataclass
class PoolConfig:
    sources: list[PoolSource] = field(default_factory=list)
    per_image: int = 10  # distorted variants per source image (sources with distort=True)
    types: list[str] | None = None  # None = all 25 KADID types
    levels: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    include_clean: bool = True  # also keep the undistorted image of distorted sources
    seed: int = 0
    val_fraction: float = 0.0  # reference-disjoint validation split


@dataclass(frozen=True)
class PoolItem:
    item_id: int
    path: str
    dist_type: str | None = None
    dist_level: int | None = None
    dist_seed: int | None = None
    split: str = "train"

    def render(self, cache_dir: str | Path | None = None) -> Image.Image:
        """The item's image: the decoded source, distorted if the item says so.

        With ``cache_dir`` (see :func:`materialize`), a distorted item is read from its stored copy.
        """
        if cache_dir is not None and self.dist_type is not None:
            return load_image(cached_path(cache_dir, self.item_id))
        img = load_image(self.path)
        if self.dist_type is None:
            return img
        return apply_distortion(img, self.dist_type, self.dist_level, seed=self.dist_seed)


def source_images(src: PoolSource) -> list[str]:
    """The source's images as absolute paths, sorted (a folder) or in the CSV's order."""
    p = Path(resolve(src.path))
    if p.is_dir():
        found = sorted(str(f.resolve()) for f in p.rglob("*") if f.is_file() and is_image_file(f))
    elif p.suffix.lower() == ".csv":
        rows = read_csv(p)
        if rows and "image" not in rows[0]:
            raise ValueError(f"{p}: a pool CSV needs an 'image' column")
        if src.split is not None:
            rows = [r for r in rows if r.get("split") == src.split]
        found = [str((p.parent / r["image"]).resolve()) for r in rows]
    else:
        raise FileNotFoundError(f"pool source {p} is neither a folder nor a .csv file")
    if not found:
        raise ValueError(f"pool source {p} holds no images" + (f" in split {src.split!r}" if src.split else ""))
    return found


def _stable_int(*parts) -> int:
    return int.from_bytes(hashlib.sha256(json.dumps(parts).encode()).digest()[:4], "little")


def build_items(cfg: PoolConfig) -> list[PoolItem]:
    """The pool's items, in a fixed order; distortions drawn per image from a seed of (pool seed, path)."""
    types = cfg.types or list_distortions()
    unknown = set(types) - set(list_distortions())
    if unknown:
        raise KeyError(f"unknown distortion type(s) {sorted(unknown)}")
    if not set(cfg.levels) <= {1, 2, 3, 4, 5}:
        raise ValueError(f"levels must be within 1..5, got {cfg.levels}")
    images: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for src in cfg.sources:
        for path in source_images(src):
            if path not in seen:
                seen.add(path)
                images.append((path, src.distort))
    val_refs = set()
    if cfg.val_fraction > 0:
        order = np.random.default_rng(cfg.seed).permutation(len(images))
        val_refs = {images[i][0] for i in order[: round(cfg.val_fraction * len(images))]}
    specs: list[tuple] = []
    for path, distort in images:
        split = "val" if path in val_refs else "train"
        if not distort or cfg.include_clean:
            specs.append((path, None, None, None, split))
        if distort:
            name = Path(path).name
            rng = np.random.default_rng(_stable_int(cfg.seed, name))
            for k in range(cfg.per_image):
                t = types[int(rng.integers(len(types)))]
                lv = int(cfg.levels[int(rng.integers(len(cfg.levels)))])
                specs.append((path, t, lv, _stable_int(cfg.seed, name, k), split))
    return [PoolItem(i, *s) for i, s in enumerate(specs)]


def pool_fingerprint(items: list[PoolItem]) -> str:
    """A hash of the item list (ids, sources, distortions) to check that shards belong together."""
    h = hashlib.sha256()
    for it in items:
        h.update(json.dumps([it.item_id, Path(it.path).name, it.dist_type, it.dist_level, it.dist_seed]).encode())
    return h.hexdigest()[:16]


def cached_path(cache_dir: str | Path, item_id: int) -> Path:
    return Path(cache_dir) / f"{item_id // 1000:04d}" / f"{item_id:07d}.png"


def materialize(items: list[PoolItem], cache_dir: str | Path, workers: int = 1, progress: bool = True) -> dict:
    """Writes every distorted item to ``cache_dir`` as lossless PNG, plus ``manifest.json`` recording
    the pool fingerprint and each item's parameters. Resumable: existing files are kept.
    """
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = cache_dir / "manifest.json"
    fingerprint = pool_fingerprint(items)
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text())["pool_fingerprint"]
        if old != fingerprint:
            raise ValueError(f"{cache_dir} holds another pool (fingerprint {old}, this pool {fingerprint})")
    todo = [it for it in items if it.dist_type is not None and not cached_path(cache_dir, it.item_id).is_file()]
    loader = DataLoader(_Materializer(todo, cache_dir), batch_size=None, num_workers=workers)
    errors = [e for e in tqdm(loader, total=len(todo), desc="materialize", disable=not progress) if e]
    manifest = {"pool_fingerprint": fingerprint, "items": [asdict(it) for it in items if it.dist_type]}
    manifest_path.write_text(json.dumps(manifest))
    return {"written": len(todo) - len(errors), "errors": errors, "cache_dir": str(cache_dir)}


class _Materializer(Dataset):
    def __init__(self, items: list[PoolItem], cache_dir: Path) -> None:
        self.items, self.cache_dir = items, cache_dir

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> str:
        it = self.items[i]
        try:
            img = it.render()
        except OSError as exc:
            return str(exc)
        path = cached_path(self.cache_dir, it.item_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.png")
        img.save(tmp, compress_level=1)
        tmp.replace(path)  # atomic: a killed job never leaves a half-written image
        return ""


def crop_boxes(width: int, height: int, crop: int | None, n: int, seed: int) -> list[tuple[int, int, int, int]]:
    """``n`` crop boxes (left, top, right, bottom); the first is centred, the rest seeded-random.

    With ``crop`` None or larger than the image, the box is the whole image (repeated once).
    """
    if crop is None or crop >= min(width, height):
        return [(0, 0, width, height)]
    boxes = [((width - crop) // 2, (height - crop) // 2)]
    rng = np.random.default_rng(seed)
    for _ in range(n - 1):
        boxes.append((int(rng.integers(0, width - crop + 1)), int(rng.integers(0, height - crop + 1))))
    return [(x, y, x + crop, y + crop) for x, y in boxes]


class PoolViews(Dataset):
    """Renders pool items as stacks of views for a teacher: ``(item_id, views (V,3,h,w), boxes, error)``.

    Decoding and distortion happen here, so a DataLoader's workers do them while the model runs.
    A source that fails to decode yields an error string instead of views.
    """

    def __init__(
        self,
        items: list[PoolItem],
        crop: int | None = 384,
        views: int = 1,
        flip: bool = False,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.items, self.crop, self.views, self.flip, self.cache_dir = items, crop, views, flip, cache_dir

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        item = self.items[i]
        try:
            img = item.render(self.cache_dir)
        except OSError as exc:  # ImageLoadError is an OSError; the message names the file
            return item.item_id, None, None, str(exc)
        t = TF.to_dtype(TF.to_image(img), torch.float32, scale=True)
        boxes = crop_boxes(img.width, img.height, self.crop, self.views, seed=_stable_int("crop", item.item_id))
        views = [t[:, y0:y1, x0:x1] for x0, y0, x1, y1 in boxes]
        if self.flip:
            views += [v.flip(-1) for v in views]
        return item.item_id, torch.stack(views), boxes, None


def config_dict(cfg: PoolConfig) -> dict:
    return asdict(cfg)
