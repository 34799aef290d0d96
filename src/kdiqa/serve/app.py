"""The HTTP service: scores and quality maps of uploaded images, a web page, health and model endpoints.

:func:`create_app` wraps one loaded backend (torch or ONNX Runtime) in a FastAPI application. Requests are
admitted up to ``max_queue`` images (503 beyond), their uploads are read in memory within the byte and
pixel limits (413 / 400 / 415), decoded on worker threads, and their views are micro-batched on the one
model thread (:mod:`kdiqa.serve.batcher`); each request must finish within ``timeout_s`` (504). Every
response carries ``X-Request-ID``, and one JSON log line per request records its id, status and latency.

Example:
    >>> from fastapi.testclient import TestClient
    >>> import kdiqa, io
    >>> from PIL import Image
    >>> from kdiqa.predict import TorchBackend
    >>> app = create_app(TorchBackend(kdiqa.create_model("iqa_test_tiny")))
    >>> buf = io.BytesIO(); Image.new("RGB", (64, 48), "gray").save(buf, "PNG")
    >>> with TestClient(app) as client:
    ...     r = client.post("/v1/score", content=buf.getvalue(), headers={"content-type": "image/png"})
    >>> r.status_code, sorted(r.json()["results"][0])
    (200, ['name', 'score'])
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from ..runtime.overlay import overlay_png
from ..runtime.preprocess import make_views
from ..runtime.qmap import plan_map
from .batcher import MicroBatcher, ServiceBusy
from .uploads import Upload, UploadError, decode_image, read_uploads

log = logging.getLogger("kdiqa.serve")

FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")
IMAGE_BODY = {
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
            }
        },
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    },
    "required": True,
}


@dataclass
class ServeSettings:
    """The service's limits and batching (``kdiqa serve`` flags)."""

    max_upload_bytes: int = 20 * 1024 * 1024  # one request body
    max_pixels: int = 40_000_000  # one image (width × height), checked before decoding
    max_files: int = 16  # images in one request
    formats: tuple[str, ...] = FORMATS  # Pillow format names
    timeout_s: float = 30.0  # one request, upload to answer
    max_queue: int = 64  # images in the service at a time; 503 beyond
    max_batch: int = 16  # views per forward pass (1: no micro-batching)
    batch_wait_ms: float = 5.0  # how long a batch waits for more requests


def _error(status: int, message: str, request_id: str = "") -> JSONResponse:
    return JSONResponse({"error": message, "status": status, "request_id": request_id}, status_code=status)


def create_app(backend, settings: ServeSettings | None = None, description: dict | None = None) -> FastAPI:
    """The FastAPI application serving ``backend`` (a :class:`~kdiqa.runtime.predictor.Backend`).

    ``description`` adds fields to ``GET /v1/models`` (e.g. the bundled name and its measured figures).
    """
    settings = settings or ServeSettings()
    batcher = MicroBatcher(backend, settings.max_batch, settings.batch_wait_ms, settings.max_queue)
    cfg = backend.cfg

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        log.info("serving", extra={"model": backend.name, "settings": asdict(settings)})
        yield
        await batcher.stop()

    app = FastAPI(
        title="kdiqa",
        summary="No-reference image quality: scores and quality maps from a distilled model.",
        lifespan=lifespan,
    )
    app.state.batcher, app.state.settings = batcher, settings

    @app.middleware("http")
    async def request_log(request: Request, call_next):
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        request.state.request_id = rid
        t0 = time.perf_counter()
        extra = {"request_id": rid, "method": request.method, "path": request.url.path}
        try:
            response = await call_next(request)
        except Exception:  # logged with its request id, then answered 500 by the server
            log.exception("request failed", extra={**extra, "status": 500})
            raise
        response.headers["X-Request-ID"] = rid
        latency = (time.perf_counter() - t0) * 1000
        log.info("request", extra={**extra, "status": response.status_code, "latency_ms": round(latency, 2)})
        return response

    async def decode(upload: Upload):
        return await asyncio.to_thread(decode_image, upload, settings.formats, settings.max_pixels)

    async def score_one(upload: Upload) -> dict:
        img = await decode(upload)
        views = await asyncio.to_thread(make_views, img, cfg)
        z = float((await batcher.predict(views)).mean(dtype="float64"))
        return {"name": upload.name, "score": round(float(cfg.to_output_scale(z)), 4)}

    async def guarded(request: Request, n_hint: int, work):
        """Admission, the timeout and the error mapping around one request's work."""
        rid = request.state.request_id
        try:
            with batcher.admit(n_hint):
                async with asyncio.timeout(settings.timeout_s):
                    return await work()
        except ServiceBusy as exc:
            response = _error(503, str(exc), rid)
            response.headers["Retry-After"] = "1"
            return response
        except TimeoutError:
            return _error(504, f"the request took longer than {settings.timeout_s:g} s", rid)
        except UploadError as exc:
            return _error(exc.status, exc.message, rid)

    @app.post("/v1/score", openapi_extra={"requestBody": IMAGE_BODY}, tags=["quality"])
    async def score(request: Request):
        """Scores one image (raw bytes) or several (multipart/form-data, any field names).

        A multipart request answers 200 with one result per part, ``score`` or ``error`` + ``status``, so a
        bad image never fails the others; a raw upload that fails answers with that error's status.
        """

        async def work():
            uploads = await read_uploads(request, settings.max_upload_bytes, settings.max_files)
            raw = not request.headers.get("content-type", "").startswith("multipart/")
            results = []
            with batcher.admit(len(uploads) - 1):  # the request holds one place already
                outcomes = await asyncio.gather(*(score_one(u) for u in uploads), return_exceptions=True)
            for u, r in zip(uploads, outcomes, strict=True):
                if isinstance(r, UploadError) and not raw:
                    results.append({"name": u.name, "error": r.message, "status": r.status})
                elif isinstance(r, BaseException):
                    raise r
                else:
                    results.append(r)
            return {"model": backend.name, "score_range": list(cfg.score_range), "results": results}

        return await guarded(request, 1, work)

    @app.post("/v1/map", openapi_extra={"requestBody": IMAGE_BODY}, tags=["quality"])
    async def quality_map(request: Request, format: str = "json", patch: int | None = None, stride: int | None = None):
        """The quality map of one image: ``format=json`` (grid and geometry), ``png`` (the overlay picture)
        or ``both`` (the JSON with the overlay as a PNG data URL); ``patch``/``stride`` in pixels."""
        if format not in ("json", "png", "both"):
            return _error(400, f"format must be json, png or both, got {format!r}", request.state.request_id)
        if (patch is not None and patch < 16) or (stride is not None and stride < 1):
            return _error(400, "patch must be >= 16 and stride >= 1", request.state.request_id)

        async def work():
            uploads = await read_uploads(request, settings.max_upload_bytes, 1)
            img = await decode(uploads[0])
            plan = await asyncio.to_thread(plan_map, img, cfg, patch, stride)
            full = await asyncio.to_thread(make_views, plan.prepared, cfg)
            z_map, z_img = await asyncio.gather(batcher.predict(plan.views), batcher.predict(full))
            qmap, prepared = plan.result(z_map, cfg, backend.name), plan.prepared
            score = round(float(cfg.to_output_scale(float(z_img.mean(dtype="float64")))), 4)
            if format == "png":
                png = await asyncio.to_thread(overlay_png, prepared, qmap)
                return Response(png, media_type="image/png", headers={"X-Score": str(score)})
            body = {"name": uploads[0].name, "score": score, "map": qmap.to_json()}
            if format == "both":
                png = await asyncio.to_thread(overlay_png, prepared, qmap)
                body["overlay_png"] = "data:image/png;base64," + base64.b64encode(png).decode()
            return body

        return await guarded(request, 1, work)

    @app.get("/v1/models", tags=["service"])
    async def models():
        """The model this service runs: name, backend, test-time views and output scale."""
        entry = {
            "name": backend.name,
            "views": {"mode": cfg.mode, "crop": cfg.crop, "n_crops": cfg.n_crops, "max_short": cfg.max_short},
            "score_range": list(cfg.score_range),
            "higher_better": cfg.higher_better,
            **(description or {}),
        }
        return {"models": [entry]}

    @app.get("/healthz", tags=["service"])
    async def healthz():
        """Liveness: the model, the places taken in the queue and the micro-batching counters."""
        return {
            "status": "ok",
            "model": backend.name,
            "in_flight": batcher.in_flight,
            "max_queue": settings.max_queue,
            "batching": batcher.stats.to_json(),
        }

    page = resources.files("kdiqa.serve") / "static"

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(str(page / "index.html"), media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        if name not in ("app.js", "style.css"):
            return _error(404, f"no static file {name!r}")
        return FileResponse(str(page / name))

    return app
