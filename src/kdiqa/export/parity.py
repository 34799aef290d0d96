"""Parity of an exported model with its torch original.

Two checks, both recorded in ``export.json``:

- :func:`sample_parity`: the largest absolute difference between torch and ONNX Runtime scores on
  sample images at several input sizes and a batch of two (this is what catches a broken export:
  a size baked into the graph, a wrong normalisation, a missing layer).
- :func:`labelled_parity`: SRCC/PLCC against MOS on a labelled set for torch, fp32 and int8, each
  a backend of the one predictor (:mod:`kdiqa.runtime.predictor`): the torch model with its own
  default views, the exported models with the views their ``preprocess.json`` describes, so a
  wrong ``preprocess.json`` would show here too.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image

from ..models.iqa import IQAModel
from ..runtime.preprocess import to_chw_float
from ..runtime.scorer import OnnxScorer

DEFAULT_SIZES = ((224, 224), (375, 500))  # (height, width): square and landscape, to exercise dynamic H/W


def synthetic_images(n: int = 2, size: tuple[int, int] = (512, 384), seed: int = 0) -> list[Image.Image]:
    """Natural-ish RGB test images (gradients, edges, texture, noise) for parity checks."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = []
    for i in range(n):
        rng = np.random.default_rng(seed + i)
        f = rng.uniform(3, 12, size=3)
        img = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / f[0] + yy / f[1])], axis=-1)
        img[((xx // (8 + 4 * i) + yy // (8 + 4 * i)) % 2) == 0] *= rng.uniform(0.4, 0.9)
        img += rng.normal(0, 0.02 + 0.05 * i, img.shape)
        out.append(Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)))
    return out


def _batch(images: list[Image.Image], hw: tuple[int, int], batch: int) -> np.ndarray:
    h, w = hw
    picked = [images[i % len(images)] for i in range(batch)]
    return np.stack([to_chw_float(img.resize((w, h), Image.BICUBIC)) for img in picked])


@torch.no_grad()
def sample_parity(
    model: IQAModel,
    scorers: dict[str, OnnxScorer],
    images: list[Image.Image] | None = None,
    sizes=DEFAULT_SIZES,
    batch: int = 2,
) -> dict:
    """Max |torch − ONNX| of normalised scores per variant and input size.

    Args:
        model: the torch model.
        scorers: variant name (``fp32``, ``int8``) → its :class:`OnnxScorer`.
        images: sample images (resized to each size); synthetic ones when omitted.
        sizes: (height, width) input sizes.
        batch: images per forward.

    Returns:
        ``{"sizes": [...], "batch": b, "<variant>": {"HxW": max_abs_diff, ..., "max": worst}}``.
    """
    images = images or synthetic_images()
    model = model.cpu().float().eval()
    out: dict = {"sizes": [f"{h}x{w}" for h, w in sizes], "batch": batch, "images": len(images)}
    for name, scorer in scorers.items():
        diffs = {}
        for hw in sizes:
            x = _batch(images, hw, batch)
            ref = model(torch.from_numpy(x)).numpy()
            got = scorer.predict(x)
            if got.shape != ref.shape:
                raise ValueError(f"{scorer.path}: output shape {got.shape} for a batch of {batch}, torch {ref.shape}")
            diffs[f"{hw[0]}x{hw[1]}"] = float(np.abs(ref - got).max())
        diffs["max"] = max(diffs.values())
        out[name] = diffs
    return out


def labelled_parity(
    model: IQAModel,
    scorers: dict[str, OnnxScorer],
    dataset: str,
    root: str | None,
    split: str = "test",
    limit: int | None = None,
    batch_size: int = 8,
) -> dict:
    """SRCC/PLCC against MOS on a labelled split for torch and every exported variant.

    Args:
        model: the torch model (its own test-time views, as ``kdiqa evaluate`` uses).
        scorers: variant name → :class:`OnnxScorer` (the runtime's numpy views).
        dataset: adapter name (``clive``) or ``csv:PATH``.
        root: the dataset's folder.
        split: which split.
        limit: keep only the first ``limit`` images (quick checks).
        batch_size: images per forward.

    Returns:
        Per backend ``srcc``, ``plcc`` and seconds; per exported variant also the SRCC drop from
        torch (``srcc_drop``), the rank correlation with torch's predictions and the max and mean |difference|
        of normalised predictions.
    """
    from ..data.datasets import get_dataset
    from ..metrics import plcc, srcc
    from ..predict import TorchBackend
    from ..runtime.predictor import predict_paths

    ds = get_dataset(dataset, root).subset(split)
    rows = ds.rows[:limit] if limit else ds.rows
    paths, mos = [r.path for r in rows], np.array([r.mos for r in rows], dtype=np.float64)
    if len(rows) < 3:
        raise ValueError(f"{dataset} {split}: {len(rows)} image(s); parity needs at least 3")
    out: dict = {"dataset": dataset, "split": split, "n": len(rows)}
    t0 = time.perf_counter()
    z_torch = predict_paths(TorchBackend(model), paths, batch_size)
    preds = {"torch": (z_torch, time.perf_counter() - t0)}
    for name, scorer in scorers.items():
        t0 = time.perf_counter()
        preds[name] = (predict_paths(scorer, paths, batch_size), time.perf_counter() - t0)
    for name, (z, seconds) in preds.items():
        pred = np.asarray(ds.denormalize(z))
        entry = {"srcc": srcc(pred, mos), "plcc": plcc(pred, mos), "seconds": round(seconds, 2)}
        if name != "torch":
            entry["srcc_drop"] = out["torch"]["srcc"] - entry["srcc"]
            entry["srcc_vs_torch"] = srcc(z, z_torch)
            entry["max_abs_diff_vs_torch"] = float(np.abs(z - z_torch).max())
            entry["mean_abs_diff_vs_torch"] = float(np.abs(z - z_torch).mean())
        out[name] = entry
    if "fp32" in out and "int8" in out:
        out["int8"]["srcc_drop_vs_fp32"] = out["fp32"]["srcc"] - out["int8"]["srcc"]
    return out
