"""The prediction subcommands of ``kdiqa``: ``score`` and ``evaluate``, both through the predictor
(:mod:`kdiqa.runtime.predictor`) with the torch backend (:class:`kdiqa.predict.TorchBackend`) or, for
``score --backend onnx``, ONNX Runtime (:class:`kdiqa.runtime.OnnxScorer`).

Importing this module imports nothing heavy: ``kdiqa score --backend onnx`` stays torch-free, and ``score``
never imports scipy or the dataset code.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _torch_backend(args, channels_last: bool = False):
    """The predictor's torch backend for ``--model`` with the ``--mode/--crop/--n-crops`` views."""
    from .hub import load
    from .predict import TorchBackend
    from .runtime.preprocess import PreprocessConfig

    model = load(args.model, device=args.device)
    views = PreprocessConfig.for_model(model.cfg, args.mode, args.crop, args.n_crops)
    return TorchBackend(model, views, channels_last=channels_last)


def cmd_evaluate(args) -> int:
    """``kdiqa evaluate``: metrics on a dataset split; unreadable images are reported (fatal with --strict)."""
    from .data.datasets import get_dataset
    from .data.io import ImageLoadError
    from .evaluation import evaluate_model, write_results

    # The same carving as `kdiqa train`, so a run's own split (random split index/seed, validation share)
    # can be reproduced: a model must not be scored on images it was trained on.
    full = get_dataset(args.dataset, args.root, split_index=args.split_index, seed=args.split_seed)
    full = full.carve(args.val_fraction, args.val_seed)
    if args.split != "all" and not any(r.split == args.split for r in full.rows):
        hint = ": carve one as training did, e.g. --val-fraction 0.15" if args.split == "val" else ""
        have = ", ".join(sorted({r.split for r in full.rows}))
        raise ValueError(f"{args.dataset} has no {args.split} split{hint} (it has: {have})")
    ds = full.subset(args.split)
    backend = _torch_backend(args, channels_last=True)
    try:
        result = evaluate_model(
            backend, ds, None, args.batch_size, args.workers, args.bootstrap, not args.quiet, args.strict
        )
    except ImageLoadError as exc:
        print(f"kdiqa evaluate: error: cannot read {exc.path}: {exc.reason} (--strict)", file=sys.stderr)
        return 1
    for f in result["failures"]:
        print(f"  skipped {f['image']}: {f['error']}", file=sys.stderr)
    result["split"] = args.split
    write_results(result, ds, args.output, args.plot)
    keys = ("srcc", "plcc", "krcc", "rmse", "n", "failed", "srcc_ci95", "plcc_ci95")
    print(json.dumps({k: result[k] for k in keys if k in result}, indent=2))
    return 0


def _onnx_backend(args):
    """``--backend onnx``: a folder written by `kdiqa export`, or a bundled model's ONNX export (no torch)."""
    from .runtime import OnnxScorer

    if args.device != "cpu":
        raise ValueError("--backend onnx runs on the CPU (onnxruntime's CPUExecutionProvider); drop --device")
    variant = "int8" if args.int8 else "fp32"
    return OnnxScorer(args.model, variant, args.threads, args.mode, args.crop, args.n_crops)


def cmd_score(args) -> int:
    """``kdiqa score``: files, folders and globs scored by the torch or ONNX Runtime backend; exit 1 if any failed."""
    from .runtime.predictor import score_paths
    from .score_io import CsvSink, collect_paths, write_json

    if args.int8 and args.backend != "onnx":
        print("kdiqa score: error: --int8 needs --backend onnx", file=sys.stderr)
        return 2
    if args.output and not args.output.endswith((".csv", ".json")):
        print(f"kdiqa score: error: --output must end with .csv or .json, got {args.output}", file=sys.stderr)
        return 2
    if args.resume and not (args.output or "").endswith(".csv"):
        print("kdiqa score: error: --resume needs a .csv --output", file=sys.stderr)
        return 2
    paths, failures = collect_paths(args.paths)
    if args.backend == "onnx":
        backend = _onnx_backend(args)
    else:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        backend = _torch_backend(args)
    sink = None
    if args.output and args.output.endswith(".csv"):
        sink = CsvSink(args.output, append=args.resume)
        if args.resume:
            done = sink.done()
            skipped = len([p for p in paths if p in done])
            paths = [p for p in paths if p not in done]
            if skipped:
                print(f"resume: {skipped} image(s) already scored in {args.output}", file=sys.stderr)
    t0 = time.perf_counter()
    results = score_paths(backend, paths, args.batch_size, args.workers, progress=not args.quiet, on_result=sink)
    elapsed = time.perf_counter() - t0
    if sink:
        for f in failures:
            sink(f)
        sink.close()
    results_all = results + failures
    if args.output and args.output.endswith(".json"):
        write_json(results_all, args.output, backend.name)
    if not args.output:
        for r in results:
            if r.score is not None:
                print(f"{r.score:.3f}\t{r.path}")
    if args.map:
        failures_map = write_maps(backend, [r.path for r in results if r.score is not None], args)
        results_all += failures_map
    failed = [r for r in results_all if r.error]
    n_ok = len(results) + len(failures) - len([r for r in results + failures if r.error])
    print(f"scored {n_ok} image(s) in {elapsed:.1f}s" + (f"; {len(failed)} failed:" if failed else ""), file=sys.stderr)
    for r in failed:
        print(f"  {r.path}: {r.error}", file=sys.stderr)
    return 1 if failed else 0


def _map_names(paths: list[str]) -> list[str]:
    """One file stem per image for its map files: the image's stem, ``-2``, ``-3`` … on repeats."""
    seen: dict[str, int] = {}
    names = []
    for p in paths:
        stem = Path(p).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return names


def write_maps(backend, paths: list[str], args) -> list:
    """``--map DIR``: a quality-map PNG (photo, overlay, colour bar) and its grid as JSON per image.

    Returns a failed :class:`~kdiqa.score_io.ScoreResult` for each image whose map could not be made.
    """
    from tqdm import tqdm

    from .data.io import ImageLoadError
    from .runtime.overlay import render_overlay
    from .runtime.qmap import quality_map
    from .score_io import ScoreResult

    out = Path(args.map)
    out.mkdir(parents=True, exist_ok=True)
    failures = []
    for path, name in tqdm(
        list(zip(paths, _map_names(paths), strict=True)), desc="map", unit="img", disable=args.quiet, file=sys.stderr
    ):
        try:
            qmap = quality_map(backend, path, args.map_patch, args.map_stride, max_batch=args.batch_size * 4)
            render_overlay(path, qmap, views=backend.cfg).save(out / f"{name}.png")
            (out / f"{name}.json").write_text(json.dumps({"image": path, **qmap.to_json()}))
        except ImageLoadError as exc:
            failures.append(ScoreResult(path, error=f"map: {exc.reason}"))
    print(f"quality maps: {len(paths) - len(failures)} written to {out}", file=sys.stderr)
    return failures
