"""``kdiqa serve``: the HTTP service and web page (:mod:`kdiqa.serve`) on uvicorn.

Importing this module imports nothing heavy; with ``--backend onnx`` the service never imports torch.
"""

from __future__ import annotations

import argparse
import sys


def _backend(args):
    if args.backend == "onnx":
        from .runtime import OnnxScorer

        return OnnxScorer(args.model, "int8" if args.int8 else "fp32", args.threads)
    if args.int8:
        raise ValueError("--int8 needs --backend onnx")
    import torch

    from .hub import load
    from .predict import TorchBackend

    if args.threads:
        torch.set_num_threads(args.threads)
    return TorchBackend(load(args.model, device=args.device), channels_last=True)


def _description(model: str) -> dict:
    """The bundled model's measured figures for ``GET /v1/models`` (empty for a checkpoint folder)."""
    from .models.pretrained import is_pretrained, resolve_name, weights_folder

    if not is_pretrained(model):
        return {"source": model}
    import json

    cfg = json.loads((weights_folder(model) / "config.json").read_text())
    keep = ("trained_on", "clive_test", "speed")
    return {"bundled": resolve_name(model), **{k: cfg[k] for k in keep if k in cfg}}


def cmd_serve(args) -> int:
    try:
        import uvicorn

        from .serve import ServeSettings, create_app
        from .serve.logs import configure
    except ImportError as exc:
        raise ImportError(f"kdiqa serve needs the serve extra: pip install 'kdiqa[serve]' ({exc})") from exc
    configure()
    settings = ServeSettings(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_pixels=int(args.max_megapixels * 1e6),
        max_files=args.max_files,
        formats=tuple(f.upper() for f in args.formats),
        timeout_s=args.timeout,
        max_queue=args.max_queue,
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
    )
    app = create_app(_backend(args), settings, _description(args.model))
    print(f"kdiqa serve: http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning")
    return 0


FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")  # kdiqa.serve.app.FORMATS, spelled out: that import needs fastapi


def add_serve_parser(sub) -> None:
    p: argparse.ArgumentParser = sub.add_parser("serve", help="HTTP service + web page: scores and quality maps")
    p.add_argument("--model", default="default", help="bundled name or alias, checkpoint folder, or (onnx) export")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch", help="onnx: no torch needed")
    p.add_argument("--int8", action="store_true", help="with --backend onnx: the int8 model")
    p.add_argument("--device", default="cpu", help="torch backend: cpu or cuda[:i]")
    p.add_argument("--threads", type=int, help="intra-op threads of the model")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="request body limit (413 beyond)")
    p.add_argument("--max-megapixels", type=float, default=40.0, help="pixels per image (400 beyond)")
    p.add_argument("--max-files", type=int, default=16, help="images per request")
    p.add_argument(
        "--formats",
        nargs="+",
        default=list(FORMATS),
        metavar="FMT",
        help="accepted image formats (Pillow names; 415 else)",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (504 beyond)")
    p.add_argument("--max-queue", type=int, default=64, help="images in the service at a time (503 beyond)")
    p.add_argument("--max-batch", type=int, default=16, help="views per forward pass (1: no micro-batching)")
    p.add_argument("--batch-wait-ms", type=float, default=5.0, help="how long a forward waits for more requests")
    p.set_defaults(fn=cmd_serve)
