"""Prediction over a dataset and the ``evaluate`` job (metrics JSON + optional scatter plot)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .data.datasets import IQADataset
from .data.io import load_image
from .data.transforms import EvalTransform
from .metrics import evaluate_predictions
from .models.iqa import IQAModel


class _ViewsDataset(Dataset):
    def __init__(self, paths: list[str], transform: EvalTransform) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return i, self.transform(load_image(self.paths[i]))


def collate_list(items):
    """Keeps a batch as a list (views of different sizes cannot be stacked); picklable for workers."""
    return items


def eval_transform_for(
    model: IQAModel, mode: str | None = None, crop: int | None = None, n_crops: int | None = None
) -> EvalTransform:
    c = model.cfg
    return EvalTransform(
        mode or c.eval_mode, crop or c.eval_crop, n_crops or c.eval_n_crops, max_short=c.eval_max_short
    )


@torch.no_grad()
def predict_paths(
    model: IQAModel,
    paths: list[str],
    transform: EvalTransform,
    batch_size: int = 8,
    workers: int = 0,
    progress: bool = False,
    channels_last: bool = True,
) -> np.ndarray:
    """Normalised predictions (higher = better), one per path, each the mean over its views.

    Views of equal size are batched together (up to ``batch_size`` images per forward); images of
    other sizes are run separately, so full-image evaluation works on mixed sizes. With
    ``channels_last`` the model and inputs use NHWC memory, the layout these CNNs are trained in
    here (the model is converted in place).
    """
    model.eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    device = next(model.parameters()).device
    loader = DataLoader(
        _ViewsDataset(paths, transform), batch_size=batch_size, num_workers=workers, collate_fn=collate_list
    )
    out = np.zeros(len(paths), dtype=np.float64)
    for items in tqdm(loader, desc="predict", disable=not progress, unit="batch"):
        for idx, z in forward_views(model, items, device, channels_last).items():
            out[idx] = z.mean().item()
    return out


def forward_views(model, items: list[tuple[int, torch.Tensor]], device, channels_last: bool = False) -> dict:
    """Runs ``(key, views (V,3,h,w))`` pairs through ``model``, batching views of equal size together.

    Returns ``key → normalised scores of its V views`` (CPU tensor).
    """
    by_shape: dict[tuple, list] = {}
    for key, views in items:
        by_shape.setdefault(tuple(views.shape[1:]), []).append((key, views))
    out = {}
    for group in by_shape.values():
        x = torch.cat([v for _, v in group]).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        z = model(x).float().cpu()
        start = 0
        for key, views in group:
            out[key] = z[start : start + len(views)]
            start += len(views)
    return out


def evaluate_model(
    model: IQAModel,
    ds: IQADataset,
    transform: EvalTransform | None = None,
    batch_size: int = 8,
    workers: int = 0,
    n_boot: int = 1000,
    progress: bool = True,
) -> dict:
    """Protocol metrics of ``model`` on every row of ``ds`` (choose the split beforehand).

    Predictions are mapped to the dataset's own scale before fitting, so DMOS datasets (lower =
    better) get positive correlations for a good model.
    """
    transform = transform or eval_transform_for(model)
    t0 = time.perf_counter()
    z = predict_paths(model, [r.path for r in ds.rows], transform, batch_size, workers, progress)
    seconds = time.perf_counter() - t0
    pred = np.asarray(ds.denormalize(z))
    result = evaluate_predictions(pred, ds.mos_array(), n_boot=n_boot)
    result.update(
        {
            "dataset": ds.name,
            "model": model.name,
            "eval_mode": transform.mode,
            "eval_crop": transform.crop,
            "eval_views": _n_views(transform),
            "seconds": round(seconds, 2),
        }
    )
    result["_predictions"] = pred.tolist()
    return result


def _n_views(t: EvalTransform) -> int:
    if t.mode == "crops":
        return t.n_crops * (2 if t.flip else 1)
    return 1


def write_results(result: dict, ds: IQADataset, output: str | Path | None, plot: str | Path | None) -> None:
    """Writes the metrics JSON (with per-image predictions) and the scatter plot."""
    pred = result.pop("_predictions")
    if output:
        payload = {
            **result,
            "predictions": [{"image": r.path, "mos": r.mos, "pred": p} for r, p in zip(ds.rows, pred, strict=True)],
        }
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(_finite(payload), indent=2, allow_nan=False))
    if plot:
        scatter_plot(np.asarray(pred), ds.mos_array(), result, plot)


def _finite(obj):
    """NaN (a metric undefined for constant predictions) → null, so the file stays valid JSON."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def scatter_plot(pred: np.ndarray, mos: np.ndarray, result: dict, path: str | Path) -> None:
    """Prediction vs MOS with the fitted logistic curve."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("--plot needs matplotlib (pip install kdiqa[plot])") from exc
    from .metrics import logistic4

    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=120)
    ax.scatter(pred, mos, s=10, alpha=0.6, label="images")
    xs = np.linspace(pred.min(), pred.max(), 200)
    ax.plot(xs, logistic4(xs, *result["logistic_beta"]), "r-", lw=2, label="4-parameter logistic fit")
    ax.set_xlabel(f"prediction ({result.get('model', '')})")
    ax.set_ylabel(f"MOS ({result.get('dataset', '')})")
    ax.set_title(f"SRCC {result['srcc']:.3f}  PLCC {result['plcc']:.3f}  n={result['n']}")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
