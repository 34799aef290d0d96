"""The deployment subcommands of ``kdiqa``: ``export`` (ONNX fp32/int8 with parity) and ``benchmark``.

Importing this module imports nothing heavy, so ``kdiqa score --backend onnx`` stays torch-free.
"""

from __future__ import annotations

import argparse
import json
import sys


def cmd_export(args) -> int:
    from .export import ExportOptions, export_model, summary_lines
    from .hub import load

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    opts = ExportOptions(
        opset=args.opset,
        exporter=args.exporter,
        int8=args.int8,
        calibration=args.calibration,
        calib_images=args.calib_images,
        calib_method=args.calib_method,
        reduce_range=args.reduce_range,
        float_stride=args.float_stride,
        sample_images=args.sample_images,
        tolerance=args.tolerance,
        parity_dataset=args.parity_dataset,
        parity_root=args.parity_root,
        parity_split=args.parity_split,
        parity_limit=args.parity_limit,
        threads=args.threads,
        batch_size=args.batch_size,
    )
    if opts.int8 and not opts.calibration:
        raise ValueError("--int8 needs --calibration: a folder of unlabelled images or a pool YAML")
    if opts.parity_dataset and not opts.parity_dataset.startswith("csv:"):
        from pathlib import Path

        from .paths import DataRootError, dataset_root

        try:
            opts.parity_root = dataset_root(opts.parity_dataset, opts.parity_root)
        except DataRootError as exc:
            print(f"kdiqa export: labelled parity skipped ({exc})", file=sys.stderr)
            opts.parity_dataset = None
        if opts.parity_dataset and not Path(opts.parity_root).is_dir():
            print(f"kdiqa export: labelled parity skipped ({opts.parity_root} is not a folder)", file=sys.stderr)
            opts.parity_dataset = None
    report = export_model(load(args.model), args.out, opts, source=args.model)
    print("\n".join(summary_lines(report)), file=sys.stderr)
    print(f"{args.out}: export.json, preprocess.json, " + ", ".join(f["file"] for f in report["files"].values()))
    return 0 if report["parity"]["ok"] else 1


def cmd_benchmark(args) -> int:
    from .bench.speed import PEERS, SpeedOptions, run

    opts = SpeedOptions(
        teacher=args.teacher,
        student=args.student,
        students=args.students,
        sizes=args.sizes,
        threads=args.threads,
        batch=args.batch,
        warmup=args.warmup,
        iters=args.iters,
        budget_s=args.budget,
        int8=not args.no_int8,
        calibration=args.calibration,
        calib_images=args.calib_images,
        parity_dataset=None if args.parity_dataset == "none" else args.parity_dataset,
        parity_root=args.parity_root,
        parity_split=args.parity_split,
        parity_limit=args.parity_limit,
        peers=[] if args.peers == ["none"] else (args.peers or list(PEERS)),
        work_dir=args.work_dir,
        out=args.out or ("benchmarks/results/speed_quick.json" if args.quick else "benchmarks/results/speed.json"),
        quick=args.quick,
    )
    result = run(opts)
    keys = [k for k in result if k.startswith(("student_", "int8_"))]
    print(json.dumps({k: result[k] for k in keys}, indent=2))
    print(f"wrote {opts.out} and {opts.out.rsplit('.', 1)[0]}.md", file=sys.stderr)
    return 0


def add_deploy_parsers(sub: argparse._SubParsersAction) -> None:
    """Adds ``export`` and ``benchmark`` to the ``kdiqa`` subcommands."""
    p = sub.add_parser("export", help="ONNX export (fp32, optionally int8) with a parity report")
    p.add_argument("--model", default="default", help="checkpoint folder, bundled name or 'default'")
    p.add_argument("--format", choices=("onnx",), default="onnx")
    p.add_argument("--out", required=True, help="folder: model.onnx [+ model.int8.onnx], preprocess.json, export.json")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument(
        "--exporter", choices=("legacy", "dynamo"), default="legacy", help="torch.onnx tracing (legacy) or torch.export"
    )
    p.add_argument("--int8", action="store_true", help="also write an int8 model (static QDQ quantisation)")
    p.add_argument("--calibration", help="unlabelled images for int8 calibration: a folder or a pool YAML")
    p.add_argument("--calib-images", type=int, default=64, help="calibration images (a seeded sample)")
    # kdiqa.export.quantize.CALIBRATION_METHOD(S), spelled out: importing it here would import torch (tested equal)
    p.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"), default="percentile")
    p.add_argument(
        "--no-reduce-range",
        dest="reduce_range",
        action="store_false",
        help="int8: full 8-bit weights (default 7-bit: no saturation on x86 CPUs without VNNI)",
    )
    p.add_argument(
        "--float-stride",
        type=int,
        default=8,
        help="int8: layers before the first one at a larger output stride stay float (0: quantise all)",
    )
    p.add_argument("--sample-images", help="folder of images for the max-difference check (default: synthetic)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="fp32 parity: max |torch - onnx| (exit 1 above)")
    p.add_argument("--parity-dataset", help="labelled set for SRCC/PLCC of torch vs fp32 vs int8, e.g. clive")
    p.add_argument("--parity-root", help="its folder (default: <data root>/<dataset>; skipped with a note if absent)")
    p.add_argument("--parity-split", default="test")
    p.add_argument("--parity-limit", type=int, help="only the first N images of the split (quick check)")
    p.add_argument("--threads", type=int, help="torch and onnxruntime threads for the checks")
    p.add_argument("--batch-size", type=int, default=8)
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("benchmark", help="speed of teacher, students (torch, ONNX fp32/int8) and peers")
    p.add_argument("--teacher", default="teacher", help="teacher: bundled name, checkpoint folder or architecture")
    p.add_argument(
        "--student",
        help="the default student, summary keys refer to it (default: the bundled 'default' model once it is a "
        "student, else iqa_mobilenetv3_small_050 with random weights)",
    )
    p.add_argument(
        "--students",
        nargs="+",
        default=["iqa_effnet_lite0", "iqa_mobilenetv3_small_050", "iqa_lcnet_050"],
        help="other students to time (random weights when given by architecture name)",
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 500], help="square input sides")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=8, help="batch for the throughput figure")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=1000, help="timed calls per cell at most")
    p.add_argument("--budget", type=float, default=10.0, help="seconds of timing per cell (slow models: fewer calls)")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 models")
    p.add_argument("--calibration", default="configs/pool/default.yaml", help="int8 calibration folder or pool YAML")
    p.add_argument("--calib-images", type=int, default=32)
    p.add_argument("--parity-dataset", default="clive", help="labelled set for the int8 SRCC drop ('none': skip)")
    p.add_argument("--parity-root", help="its folder (default: <data root>/<dataset>; skipped if absent)")
    p.add_argument("--parity-split", default="test")
    p.add_argument("--parity-limit", type=int, help="first N images only")
    p.add_argument("--peers", nargs="+", help="subset of topiq_nr musiq hyperiqa brisque niqe ('none': no peers)")
    p.add_argument("--work-dir", help="keep the exported models here (default: a temporary folder)")
    p.add_argument("--out", help="JSON results (default benchmarks/results/speed.json; speed_quick.json with --quick)")
    p.add_argument("--quick", action="store_true", help="smoke run: few calls, tiny calibration, peers at batch 1")
    p.set_defaults(fn=cmd_benchmark)
