"""Self-supervised pretext training on an unlabelled pool: distortion-type classification and
distortion-level ranking (``kdiqa pretext``), a pre-training stage for students that needs no
human scores.

Each sample takes one source image of the pool, one distortion type and two different levels, and
crops both distorted images at the same box. The model's own quality score must rank the milder
level above the stronger one (margin ranking, as in RankIQA, Liu et al. ICCV 2017), and a linear
head on the embedding classifies the type (as in the distortion-aware pre-training of e.g. CONTRIQUE
or DB-CNN's synthetic stage). The type head is discarded afterwards; the backbone and the quality
head carry over to distillation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler

from . import distributed
from .checkpoint import save_model
from .data.distortions import apply_distortion, list_distortions
from .data.io import load_image
from .data.pools import PoolSource, crop_boxes, source_images
from .losses import margin_loss
from .models.iqa import IQAModel
from .models.zoo import create_model
from .runs import prepare_run
from .trainer import Run, Stage, steps_for, train

# Types whose severity is not monotone in the level (level 3 is the identity): no level ranking.
NOT_RANKABLE = ("mean_shift", "contrast_change")


@dataclass
class PretextConfig:
    model: str = "iqa_mobilenetv3_small_050"
    pretrained: str = "none"
    sources: list[PoolSource] = field(default_factory=list)
    types: list[str] | None = None  # None: all 25
    crop: int = 224
    samples_per_epoch: int = 2048
    epochs: int = 1
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.01
    type_weight: float = 1.0
    rank_weight: float = 1.0
    margin: float = 0.05
    workers: int = 1
    seed: int = 0
    out_dir: str = "runs/pretext"
    device: str = "auto"
    threads: int | None = None
    resume: bool = True  # continue from out_dir/last (after the last finished epoch)


class PretextPairs(Dataset):
    """Deterministic (per epoch and index) pairs of the same crop at two levels of one distortion.

    Items: ``{"mild": (3,c,c), "strong": (3,c,c), "type": int, "rankable": bool}``.
    """

    def __init__(self, images: list[str], types: list[str], crop: int, length: int, seed: int = 0) -> None:
        self.images, self.types, self.crop, self.length, self.seed = images, types, crop, length, seed
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        img = load_image(self.images[int(rng.integers(len(self.images)))])
        t = int(rng.integers(len(self.types)))
        mild, strong = sorted(rng.choice(5, size=2, replace=False) + 1)
        box = crop_boxes(img.width, img.height, self.crop, 2, seed=int(rng.integers(2**31)))[-1]
        region = img.crop(box)
        dseed = int(rng.integers(2**31))
        views = [apply_distortion(region, self.types[t], int(lv), seed=dseed) for lv in (mild, strong)]
        tensors = [TF.to_dtype(TF.to_image(v), torch.float32, scale=True) for v in views]
        if tensors[0].shape[-1] != self.crop or tensors[0].shape[-2] != self.crop:
            tensors = [TF.resize(x, [self.crop, self.crop], antialias=True) for x in tensors]
        return {"mild": tensors[0], "strong": tensors[1], "type": t, "rankable": self.types[t] not in NOT_RANKABLE}


def pretext_losses(model: IQAModel, type_head: nn.Module, batch: dict, cfg: PretextConfig) -> dict[str, torch.Tensor]:
    """Type cross-entropy on both views + margin ranking of mild above strong (rankable types)."""
    x = torch.cat([batch["mild"], batch["strong"]])
    emb = model.embed(x)
    score = model.head(emb)
    n = len(batch["mild"])
    types = batch["type"].repeat(2)
    out = {"type": cfg.type_weight * F.cross_entropy(type_head(emb), types)}
    mask = batch["rankable"]
    if mask.any():
        out["rank"] = cfg.rank_weight * margin_loss(score[:n][mask], score[n:][mask], cfg.margin)
    out["loss"] = sum(out.values())
    with torch.no_grad():
        out["type_acc"] = (type_head(emb).argmax(1) == types).float().mean()
        out["rank_acc"] = (score[:n] > score[n:])[mask].float().mean() if mask.any() else torch.tensor(0.0)
    return out


def pretrain(cfg: PretextConfig, progress: bool = True) -> dict:
    """Runs the pretext stage on the trainer (resumable per epoch); writes ``out_dir/model`` (the IQA
    checkpoint after the last epoch) and ``history.jsonl``."""
    device, out = prepare_run(cfg, "pretext_config.json")
    types = cfg.types or list_distortions()
    images = sorted({p for src in cfg.sources for p in source_images(src)})
    ds = PretextPairs(images, types, cfg.crop, cfg.samples_per_epoch, cfg.seed)
    model = create_model(cfg.model, pretrained=cfg.pretrained).to(device)
    type_head = nn.Linear(model.embed_dim, len(types)).to(device)
    module = nn.ModuleDict({"model": model, "type_head": type_head})

    def batches(epoch: int) -> DataLoader:
        ds.epoch = epoch
        order = BatchSampler(SequentialSampler(ds), cfg.batch_size, drop_last=True)
        return DataLoader(ds, batch_sampler=distributed.shard(order), num_workers=cfg.workers)

    steps = steps_for(len(ds) // cfg.batch_size, None)
    stage = Stage(
        name="pretext",
        kind="pretext",
        epochs=cfg.epochs,
        steps=steps,
        batches=batches,
        param_groups=lambda: [{"params": list(module.parameters()), "lr": cfg.lr, "weight_decay": cfg.weight_decay}],
        warmup=steps // 10,
    )
    run = Run(
        out=out,
        model=model,
        module=module,
        loss_fn=lambda batch, kind, step: pretext_losses(model, type_head, batch, cfg),
        device=device,
        extra_state=["type_head"],
        meta={"pretext": asdict(cfg)},
        resume=cfg.resume,
        progress=progress,
    )
    result = train(run, [stage])
    if distributed.is_main():
        save_model(model, out / "model", {"pretext": asdict(cfg), "history": result["history"]})
    return {"out": str(out / "model"), "seconds": result["seconds"], "history": result["history"]}
