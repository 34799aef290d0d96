"""Teacher targets computed once and reused by every run: fixed crops + the teacher's scores and maps.

On a CPU the frozen teacher's forward pass costs more than the small student's forward + backward,
and an ablation trains many students from one teacher. So the crops a run trains on are fixed in
advance (``views`` seeded crops per image), the teacher runs over them once, and the crops (uint8),
its scores and the stage maps that feature methods need (float16) are stored in one safetensors
file. This is the idea of FKD (Shen & Xing, "A Fast Knowledge Distillation Framework for Visual
Recognition", ECCV 2022), which stores region coordinates with their soft labels, applied to
feature maps as well. The price: fixed crops without flips instead of fresh random crops.

A cache is keyed by a fingerprint of everything that determines it (teacher weights, sources,
crop, views, stages), so a changed teacher or pool never reuses stale targets.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..data.pools import crop_boxes
from ..data.transforms import _pad_to
from ..models.iqa import IQAModel


@dataclass
class CacheSection:
    """``cache`` section of a distillation config."""

    enabled: bool = False
    dir: str = "runs/teacher_cache"
    pool_crop: int = 224
    pool_views: int = 2  # fixed crops per pool item
    labelled_crop: int = 320
    labelled_views: int = 4  # fixed crops per labelled training image (for the joint stage)
    stages: list[int] = field(default_factory=lambda: [1, 2, 3, 4])  # teacher stage maps to store
    flip: bool = True  # mirror crops and their teacher maps at random (CachedCrops)
    batch_size: int = 32
    workers: int = 1


@dataclass(frozen=True)
class CacheSource:
    """One image of a cache: a stable key, how to render it, and its normalised MOS (NaN: unrated)."""

    key: str
    render: Callable[[], Image.Image]
    mos: float = float("nan")


# Model-config fields added after caches and run folders were first fingerprinted. While they hold their default
# they stay out of the hash, so adding an option to ModelConfig does not orphan every existing cache and run.
_LATER_FIELDS = {"num_stages": None, "pruned_shapes": {}, "input_pool": 1}


def teacher_fingerprint(teacher: IQAModel) -> str:
    """A short hash of the teacher's config and weights."""
    cfg = {k: v for k, v in teacher.cfg.to_dict().items() if k not in _LATER_FIELDS or v != _LATER_FIELDS[k]}
    h = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode())
    for name, t in sorted(teacher.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class _Views(Dataset):
    def __init__(self, sources: Sequence[CacheSource], crop: int, views: int) -> None:
        self.sources, self.crop, self.views = sources, crop, views

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> torch.Tensor:
        src = self.sources[i]
        t = _pad_to(TF.to_image(src.render()), self.crop)  # uint8 (3, H, W)
        seed = int(hashlib.sha256(src.key.encode()).hexdigest()[:8], 16)
        boxes = crop_boxes(t.shape[-1], t.shape[-2], self.crop, self.views, seed=seed)
        boxes = (boxes * self.views)[: self.views]  # an image no larger than the crop: repeat its one box
        return torch.stack([t[:, y0:y1, x0:x1] for x0, y0, x1, y1 in boxes])


@torch.no_grad()
def build_cache(
    teacher: IQAModel,
    sources: Sequence[CacheSource],
    crop: int,
    views: int,
    stages: Sequence[int],
    root: str | Path,
    batch_size: int = 32,
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Renders ``views`` crops per source, runs the teacher once, stores everything; returns the file.

    An existing cache with the same fingerprint is reused as is.
    """
    meta = {
        "teacher": teacher_fingerprint(teacher),
        "sources": hashlib.sha256("\n".join(s.key for s in sources).encode()).hexdigest()[:16],
        "n_sources": len(sources),
        "crop": crop,
        "views": views,
        "stages": list(stages),
        "version": 1,
    }
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(root) / f"cache_{digest}.safetensors"
    if path.is_file():
        return path
    n_stages = len(teacher.feature_info)
    if any(not 0 <= s < n_stages for s in stages):
        raise ValueError(f"cache stages {list(stages)} outside the teacher's stages 0..{n_stages - 1}")
    device = next(teacher.parameters()).device
    teacher.eval()
    # Its own generator: building a cache draws nothing from the global one, so a run trains the same whether
    # it built its caches or found them.
    loader = DataLoader(
        _Views(sources, crop, views),
        batch_size=max(1, batch_size // views),
        num_workers=workers,
        generator=torch.Generator().manual_seed(0),
    )
    images, scores, feats = [], [], {s: [] for s in stages}
    for v in tqdm(loader, desc=f"teacher cache ({len(sources)} images × {views} crops)", disable=not progress):
        v = v.flatten(0, 1)
        x = (v.to(device).float() / 255).contiguous(memory_format=torch.channels_last)  # faster convs on CPU
        z, maps = teacher.forward_intermediates(x, indices=list(stages))
        images.append(v)
        scores.append(z.float().cpu())
        for s, m in zip(stages, maps, strict=True):
            feats[s].append(m.to(torch.float16).cpu().contiguous())
    tensors = {
        "image": torch.cat(images),
        "t_score": torch.cat(scores),
        "score": torch.tensor([s.mos for s in sources for _ in range(views)], dtype=torch.float32),
        **{f"t_feat{s}": torch.cat(f) for s, f in feats.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"kdiqa_cache": json.dumps(meta)})
    tmp.replace(path)  # atomic: a killed job never leaves a half-written cache
    (path.with_suffix(".json")).write_text(json.dumps({**meta, "items": len(tensors["image"])}, indent=2))
    return path


class CachedCrops(Dataset):
    """The crops of a cache with their MOS (NaN if unrated) and the teacher's score and stage maps.

    Items: ``{"image": float (3,h,w) in [0,1], "score", "t_score", "t_feat{s}": float maps}``.

    With ``flip``, an item is mirrored left-right half of the time, its teacher maps with it. The
    teacher's score is kept: quality does not change in a mirror (the teacher was trained with
    flips), and its maps of a mirrored crop are, up to border effects, the mirrored maps. Without
    this, the student memorises a cache's few fixed crops per image within a few epochs.
    """

    def __init__(self, path: str | Path, flip: bool = False) -> None:
        self.path, self.flip = Path(path), flip
        self.tensors = load_file(str(self.path))
        self.feat_keys = sorted(k for k in self.tensors if k.startswith("t_feat"))

    def __len__(self) -> int:
        return len(self.tensors["image"])

    def __getitem__(self, i: int) -> dict:
        t = self.tensors
        item = {"image": t["image"][i].float() / 255, "score": t["score"][i], "t_score": t["t_score"][i]}
        item.update({k: t[k][i].float() for k in self.feat_keys})
        if self.flip and torch.rand(()) < 0.5:
            item.update({k: item[k].flip(-1) for k in ("image", *self.feat_keys)})
        return item


def cache_meta(path: str | Path) -> dict:
    """The fingerprint fields and item count written next to a cache."""
    return json.loads(Path(path).with_suffix(".json").read_text())
