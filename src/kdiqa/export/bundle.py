"""``kdiqa export``: one folder with the fp32 (and int8) ONNX model, its preprocessing and a parity report."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..evaluation import finite_json
from ..models.iqa import IQAModel
from ..runtime.scorer import OnnxScorer
from .onnx import (
    DEFAULT_OPSET,
    FP32_NAME,
    INT8_NAME,
    REPORT_NAME,
    export_fp32,
    file_info,
    model_opset,
    preprocess_config,
    versions,
)
from .parity import labelled_parity, sample_parity
from .quantize import CALIBRATION_METHOD, FLOAT_STRIDE, calibration_images, quantize_int8


@dataclass
class ExportOptions:
    """What ``kdiqa export`` does; every field has a command-line option of the same name."""

    opset: int = DEFAULT_OPSET
    exporter: str = "legacy"
    int8: bool = False
    calibration: str | None = None  # folder of images or pool YAML (needed for int8)
    calib_images: int = 64
    calib_method: str = CALIBRATION_METHOD
    calib_seed: int = 0
    reduce_range: bool = True  # 7-bit weights: no u8×s8 saturation on CPUs without VNNI
    float_stride: int = FLOAT_STRIDE  # int8: the front end up to this output stride stays float
    sample_images: str | None = None  # folder of images for the max-abs-difference check
    tolerance: float = 1e-4  # fp32 parity: max |torch − ONNX| allowed on normalised scores
    parity_dataset: str | None = None  # e.g. "clive": SRCC/PLCC for torch vs fp32 vs int8
    parity_root: str | None = None
    parity_split: str = "test"
    parity_limit: int | None = None
    threads: int | None = None  # ONNX Runtime intra-op threads for the checks
    batch_size: int = 8


def _sample_images(opts: ExportOptions):
    if not opts.sample_images:
        return None, "synthetic"
    loaders, desc = calibration_images(opts.sample_images, n=4, seed=0)
    return [load() for load in loaders], desc


def export_model(model: IQAModel, out_dir: str | Path, opts: ExportOptions | None = None, source: str = "") -> dict:
    """Exports ``model`` to ``out_dir`` and checks parity; returns (and writes) the report.

    Args:
        model: the torch model.
        out_dir: the folder to write (created; existing export files are replaced).
        opts: export settings.
        source: how the model was named (recorded).

    Returns:
        The ``export.json`` payload; ``report["parity"]["ok"]`` is False when the fp32 model differs
        from torch by more than ``opts.tolerance`` on the sample images.
    """
    opts = opts or ExportOptions()
    if opts.int8 and not opts.calibration:
        raise ValueError("--int8 needs --calibration: a folder of unlabelled images or a pool YAML")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.cpu().float().eval()
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    export_fp32(model, out / FP32_NAME, opset=opts.opset, exporter=opts.exporter)
    timings["export_fp32"] = time.perf_counter() - t0
    files = {"fp32": FP32_NAME}
    report: dict = {
        "model": model.cfg.name,
        "source": source,
        "format": "onnx",
        "opset": model_opset(out / FP32_NAME),
        "exporter": opts.exporter,
        "dynamic_axes": {"image": ["batch", "height", "width"], "score": ["batch"]},
        "versions": versions(),
    }
    if opts.int8:
        t0 = time.perf_counter()
        report["int8"] = _export_int8(model, out, opts)
        timings["quantize_int8"] = time.perf_counter() - t0
        files["int8"] = INT8_NAME
    elif (out / INT8_NAME).exists():
        (out / INT8_NAME).unlink()  # a stale int8 file from an earlier export would not match
    preprocess_config(model, files).write(out)
    report["files"] = {k: file_info(out / v) for k, v in files.items()}
    if opts.int8:
        sizes = report["files"]
        report["int8"]["size_ratio_fp32_over_int8"] = sizes["fp32"]["bytes"] / sizes["int8"]["bytes"]

    scorers = {k: OnnxScorer(out, k, threads=opts.threads) for k in files}
    t0 = time.perf_counter()
    images, desc = _sample_images(opts)
    parity = sample_parity(model, scorers, images)
    parity["source"] = desc
    parity["tolerance"] = opts.tolerance
    parity["ok"] = parity["fp32"]["max"] <= opts.tolerance
    timings["sample_parity"] = time.perf_counter() - t0
    report["parity"] = parity
    if opts.parity_dataset:
        t0 = time.perf_counter()
        report["parity_labelled"] = labelled_parity(
            model,
            scorers,
            opts.parity_dataset,
            opts.parity_root,
            opts.parity_split,
            opts.parity_limit,
            opts.batch_size,
        )
        timings["labelled_parity"] = time.perf_counter() - t0
    report["seconds"] = {k: round(v, 2) for k, v in timings.items()}
    report = finite_json(report)  # NaN (a constant predictor's correlation) → null: valid JSON
    (out / REPORT_NAME).write_text(json.dumps(report, indent=2, allow_nan=False))
    return report


def _export_int8(model: IQAModel, out: Path, opts: ExportOptions) -> dict:
    """Writes the static int8 model beside the fp32 one; returns its settings for the report."""
    images, desc = calibration_images(opts.calibration, opts.calib_images, opts.calib_seed)
    settings = quantize_int8(
        out / FP32_NAME,
        out / INT8_NAME,
        images,
        preprocess_config(model),
        opts.calib_method,
        reduce_range=opts.reduce_range,
        float_stride=opts.float_stride,
    )
    return settings | {"calibration": desc}


def summary_lines(report: dict) -> list[str]:
    """A short human-readable account of an export report."""
    lines = [f"{report['model']}: opset {report['opset']} ({report['exporter']} exporter)"]
    for k, f in report["files"].items():
        lines.append(f"  {k}: {f['file']} {f['bytes'] / 1e6:.2f} MB")
    if "int8" in report:
        lines.append(f"  int8 size ratio fp32/int8 = {report['int8']['size_ratio_fp32_over_int8']:.2f}")
    p = report["parity"]
    for k in report["files"]:
        worst = ", ".join(f"{s}: {p[k][s]:.2e}" for s in p["sizes"])
        lines.append(f"  max |torch - {k}| (normalised, batch {p['batch']}) {worst}")
    lines.append(f"  fp32 parity {'OK' if p['ok'] else 'FAILED'} (tolerance {p['tolerance']:.0e})")
    lab = report.get("parity_labelled")
    if lab:
        parts = [f"{k} SRCC {_num(lab[k]['srcc'])} PLCC {_num(lab[k]['plcc'])}" for k in ("torch", *report["files"])]
        lines.append(f"  {lab['dataset']} {lab['split']} (n={lab['n']}): " + "; ".join(parts))
    return lines


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
