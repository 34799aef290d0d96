"""Prediction over a dataset and the ``evaluate`` job (metrics JSON + optional scatter plot).

Predictions go through the predictor (:mod:`kdiqa.runtime.predictor`) with the torch backend
(:class:`kdiqa.predict.TorchBackend`) or any other backend, so ``evaluate``, ``score`` and training
validation see the same views and the same numbers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .data.io import ImageLoadError
from .data.transforms import EvalTransform
from .metrics import evaluate_predictions
from .predict import TorchBackend
from .runtime import predictor
from .runtime.preprocess import PreprocessConfig

if TYPE_CHECKING:
    from .data.datasets import IQADataset
    from .models.iqa import IQAModel

Views = PreprocessConfig | EvalTransform | None


def eval_transform_for(
    model: IQAModel, mode: str | None = None, crop: int | None = None, n_crops: int | None = None
) -> EvalTransform:
    """An :class:`EvalTransform` with ``model``'s default views (``mode``/``crop``/``n_crops`` override them)."""
    v = PreprocessConfig.for_model(model.cfg, mode, crop, n_crops)
    return EvalTransform(v.mode, v.crop, v.n_crops, max_short=v.max_short)


def predict_paths(
    model: IQAModel,
    paths: list[str],
    views: Views = None,
    batch_size: int = 8,
    workers: int = 0,
    progress: bool = False,
    channels_last: bool = True,
) -> np.ndarray:
    """Normalised predictions (higher = better), one per path, each the mean over its views.

    ``views`` is a :class:`~kdiqa.runtime.preprocess.PreprocessConfig` (or the settings of an
    :class:`EvalTransform`; ``None``: the model's defaults). Views of equal size are batched together
    (up to ``batch_size`` images per forward), so full-image evaluation works on mixed sizes. With
    ``channels_last`` the model and inputs use NHWC memory (the model is converted in place). An
    unreadable image raises :class:`~kdiqa.data.io.ImageLoadError`; ``workers`` threads decode ahead.
    """
    backend = TorchBackend(model, views, channels_last=channels_last)
    return predictor.predict_paths(backend, paths, batch_size, workers, progress)


def evaluate_model(
    model: IQAModel | predictor.Backend,
    ds: IQADataset,
    views: Views = None,
    batch_size: int = 8,
    workers: int = 0,
    n_boot: int = 1000,
    progress: bool = True,
    strict: bool = False,
) -> dict:
    """Protocol metrics of ``model`` (an IQA model or any predictor backend) on every row of ``ds``.

    Choose the split beforehand. Predictions are mapped to the dataset's own scale before fitting, so
    DMOS datasets (lower = better) get positive correlations for a good model. An image that cannot be
    read is left out and listed under ``failures`` (``failed`` counts them); with ``strict`` the first
    one raises :class:`~kdiqa.data.io.ImageLoadError` instead.
    """
    if isinstance(model, torch.nn.Module):
        backend = TorchBackend(model, views, channels_last=True)
    elif views is not None:
        raise ValueError("a backend brings its own views: pass them when creating it")
    else:
        backend = model
    paths = [r.path for r in ds.rows]
    scored, z, failures = [], [], []
    t0 = time.perf_counter()
    for i, zi, err in predictor.iter_predictions(backend, paths, batch_size, workers, progress, desc="predict"):
        if err is None:
            scored.append(i)
            z.append(zi)
        elif strict:
            raise ImageLoadError(paths[i], err)
        else:
            failures.append({"image": paths[i], "error": err})
    seconds = time.perf_counter() - t0
    if not scored:
        raise ValueError(f"{ds.name}: none of the {len(paths)} image(s) could be read")
    pred = np.atleast_1d(np.asarray(ds.denormalize(np.asarray(z))))
    result = evaluate_predictions(pred, ds.mos_array()[scored], n_boot=n_boot)
    result.update(
        {
            "dataset": ds.name,
            "model": backend.name,
            "eval_mode": backend.cfg.mode,
            "eval_crop": backend.cfg.crop,
            "eval_views": backend.cfg.n_views,
            "seconds": round(seconds, 2),
            "failed": len(failures),
            "failures": failures,
        }
    )
    result["_predictions"] = pred.tolist()
    result["_scored"] = scored
    return result


def write_results(result: dict, ds: IQADataset, output: str | Path | None, plot: str | Path | None) -> None:
    """Writes the metrics JSON (with per-image predictions) and the scatter plot."""
    pred = result.pop("_predictions")
    rows = [ds.rows[i] for i in result.pop("_scored", range(len(ds.rows)))]  # the images that could be read
    if output:
        payload = {
            **result,
            "predictions": [{"image": r.path, "mos": r.mos, "pred": p} for r, p in zip(rows, pred, strict=True)],
        }
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(finite_json(payload), indent=2, allow_nan=False))
    if plot:
        scatter_plot(np.asarray(pred), np.array([r.mos for r in rows], dtype=np.float64), result, plot)


def finite_json(obj):
    """NaN (a metric undefined for constant predictions) → null, so the file stays valid JSON."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
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
