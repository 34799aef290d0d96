"""The HTTP service (FastAPI TestClient): endpoints, limits, failures in a batch, micro-batching, logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import starlette.formparsers
from conftest import synthetic_photo
from fastapi.testclient import TestClient
from PIL import Image

import kdiqa
from kdiqa.predict import TorchBackend
from kdiqa.serve import ServeSettings, create_app
from kdiqa.serve.batcher import MicroBatcher

PNG = {"content-type": "image/png"}
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


def png_bytes(size=(64, 48), seed=0, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    synthetic_photo(size, seed).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def backend():
    return TorchBackend(kdiqa.create_model("iqa_test_tiny"))


def client(backend, **settings) -> TestClient:
    return TestClient(create_app(backend, ServeSettings(**settings)))


def test_health_models_openapi_and_page(backend):
    with client(backend) as c:
        health = c.get("/healthz").json()
        assert health["status"] == "ok" and health["model"] == "iqa_test_tiny" and health["in_flight"] == 0
        model = c.get("/v1/models").json()["models"][0]
        assert model["name"] == "iqa_test_tiny" and model["score_range"] == [0.0, 100.0]
        assert {"/v1/score", "/v1/map", "/v1/models", "/healthz"} <= set(c.get("/openapi.json").json()["paths"])
        page = c.get("/")
        assert page.status_code == 200 and 'id="files"' in page.text
        for name in ("app.js", "style.css"):
            r = c.get(f"/static/{name}")
            assert r.status_code == 200 and "http://" not in r.text and "https://" not in r.text  # no CDN
        assert "https://" not in page.text
        assert c.get("/static/../app.py").status_code == 404


def test_score_raw_bytes_equals_the_backend_score(backend):
    data = png_bytes()
    with client(backend) as c:
        r = c.post("/v1/score", content=data, headers={**PNG, "x-filename": "a%20b.png"})
    assert r.status_code == 200
    (result,) = r.json()["results"]
    assert result["name"] == "a b.png"
    assert result["score"] == pytest.approx(backend.score(Image.open(io.BytesIO(data))), abs=1e-3)
    assert r.headers["x-request-id"]


def test_a_bad_image_in_a_batch_does_not_fail_the_others(backend):
    files = [
        ("files", ("good.png", png_bytes(seed=1), "image/png")),
        ("files", ("notes.txt", b"hello, not an image", "text/plain")),
        ("files", ("empty.jpg", b"", "image/jpeg")),
        ("files", ("anim.gif", png_bytes(fmt="GIF"), "image/gif")),
        ("files", ("good2.jpg", png_bytes(seed=2, fmt="JPEG"), "image/jpeg")),
    ]
    with client(backend) as c:
        r = c.post("/v1/score", files=files)
    assert r.status_code == 200
    res = r.json()["results"]
    assert [x["name"] for x in res] == ["good.png", "notes.txt", "empty.jpg", "anim.gif", "good2.jpg"]
    assert 0 <= res[0]["score"] <= 100 and 0 <= res[4]["score"] <= 100
    assert (res[1]["status"], res[2]["status"], res[3]["status"]) == (400, 400, 415)
    assert "notes.txt: not an image" in res[1]["error"] and "empty.jpg: empty upload" in res[2]["error"]
    assert "GIF images are not accepted" in res[3]["error"]


@pytest.mark.parametrize(
    ("body", "headers", "settings", "status", "message"),
    [
        (b"x" * 2000, PNG, {"max_upload_bytes": 1000}, 413, "exceeds the limit of 1000 bytes"),
        (None, PNG, {"max_pixels": 1000}, 400, "64x48 = 3072 pixels exceeds the limit of 1000"),
        (b"GIF89a not really", PNG, {}, 400, "not an image"),
        (b"", PNG, {}, 400, "empty upload"),
        (None, {"content-type": "text/plain"}, {}, 415, "unsupported Content-Type 'text/plain'"),
        (None, PNG, {"formats": ("JPEG",)}, 415, "PNG images are not accepted"),
    ],
    ids=["oversize", "pixels", "non-image", "empty", "content-type", "format"],
)
def test_limits_answer_with_a_status_and_a_message(backend, body, headers, settings, status, message):
    with client(backend, **settings) as c:
        r = c.post("/v1/score", content=png_bytes() if body is None else body, headers=headers)
    assert r.status_code == status and message in r.json()["error"], r.json()


def test_oversize_is_refused_without_content_length(backend):
    def chunks():
        for _ in range(5):
            yield b"x" * 400

    with client(backend, max_upload_bytes=1000) as c:
        r = c.post("/v1/score", content=chunks(), headers=PNG)  # chunked transfer: no Content-Length
    assert r.status_code == 413


def test_decompression_bomb_is_refused_before_decoding(backend):
    buf = io.BytesIO()
    Image.new("1", (15000, 15000)).save(buf, "PNG")  # 225 Mpx in a few kB: over Pillow's own guard too
    assert len(buf.getvalue()) < 100_000
    with client(backend) as c:
        r = c.post("/v1/score", content=buf.getvalue(), headers=PNG)
    assert r.status_code == 400 and "decompression-bomb guard" in r.json()["error"]


def test_too_many_files_and_a_full_queue(backend):
    files = [("files", (f"{i}.png", png_bytes(seed=i), "image/png")) for i in range(3)]
    with client(backend, max_files=2) as c:
        r = c.post("/v1/score", files=files)
        assert r.status_code == 400 and "too many images" in r.json()["error"]
    with client(backend, max_queue=2) as c:
        r = c.post("/v1/score", files=files)  # 3 images, 2 places
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "busy" in r.json()["error"]
        assert c.get("/healthz").json()["in_flight"] == 0  # places are given back
        assert c.post("/v1/score", files=files[:2]).status_code == 200


class Slow:
    """A backend that sleeps in every forward."""

    def __init__(self, backend, seconds: float) -> None:
        self.inner, self.seconds = backend, seconds
        self.name, self.cfg = backend.name, backend.cfg

    def predict(self, batch):
        time.sleep(self.seconds)
        return self.inner.predict(batch)


def test_a_slow_request_times_out(backend):
    with client(Slow(backend, 0.5), timeout_s=0.1) as c:
        r = c.post("/v1/score", content=png_bytes(), headers=PNG)
        assert r.status_code == 504 and "longer than 0.1 s" in r.json()["error"]
        assert c.get("/healthz").json()["in_flight"] == 0


def test_map_json_png_and_both(backend):
    data = png_bytes((96, 64))
    with client(backend) as c:
        j = c.post("/v1/map?patch=32&stride=16", content=data, headers=PNG).json()
        png = c.post("/v1/map?format=png", content=data, headers=PNG)
        both = c.post("/v1/map?format=both&patch=32", content=data, headers=PNG).json()
        bad = c.post("/v1/map?format=svg", content=data, headers=PNG)
    grid = j["map"]
    assert (grid["rows"], grid["cols"], grid["patch"], grid["stride"]) == (3, 5, 32, 16)
    assert grid["xs"] == [0, 16, 32, 48, 64] and grid["size"] == [96, 64]
    expected = backend.quality_map(Image.open(io.BytesIO(data)), patch=32, stride=16).scores
    np.testing.assert_allclose(grid["scores"], expected, atol=1e-3)
    assert j["score"] == pytest.approx(backend.score(Image.open(io.BytesIO(data))), abs=1e-3)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n" and float(png.headers["x-score"]) == pytest.approx(j["score"])
    assert both["overlay_png"].startswith("data:image/png;base64,") and both["map"]["patch"] == 32
    assert bad.status_code == 400


def test_uploads_never_touch_the_disk(backend, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an upload was written to a temporary file")

    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", refuse)  # how form parsing would spool
    big = png_bytes((1200, 900))  # over Starlette's 1 MB spooling threshold
    assert len(big) > 1024 * 1024
    with client(backend) as c:
        r = c.post("/v1/score", files=[("files", ("big.png", big, "image/png"))])
    assert r.status_code == 200 and "score" in r.json()["results"][0]


def test_each_request_logs_its_id_status_and_latency(backend, caplog):
    with caplog.at_level(logging.INFO, logger="kdiqa.serve"), client(backend) as c:
        r = c.post("/v1/score", content=png_bytes(), headers={**PNG, "x-request-id": "abc123"})
    assert r.headers["x-request-id"] == "abc123"
    (rec,) = [x for x in caplog.records if x.getMessage() == "request"]
    assert (rec.request_id, rec.status, rec.path) == ("abc123", 200, "/v1/score") and rec.latency_ms > 0


class Recording:
    """Records the batch size of every forward; scores a view by its mean."""

    name = "recording"

    def __init__(self, cfg) -> None:
        self.cfg, self.sizes = cfg, []

    def predict(self, batch):
        self.sizes.append(len(batch))
        time.sleep(0.02)
        return batch.mean(axis=(1, 2, 3))


@pytest.mark.parametrize(("max_batch", "forwards"), [(8, 1), (1, 8)])
def test_concurrent_requests_share_forward_passes(backend, max_batch, forwards):
    rec = Recording(backend.cfg)
    views = [np.full((1, 3, 8, 8), i / 10, np.float32) for i in range(8)]

    async def run():
        batcher = MicroBatcher(rec, max_batch=max_batch, wait_ms=50)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.predict(v) for v in views)), batcher.stats
        finally:
            await batcher.stop()

    out, stats = asyncio.run(run())
    assert [float(o[0]) for o in out] == pytest.approx([i / 10 for i in range(8)])  # each caller gets its own
    assert len(rec.sizes) == forwards and sum(rec.sizes) == 8 and stats.jobs == 8


def test_the_onnx_service_runs_without_torch():
    """What the container runs: `kdiqa serve --backend onnx` with torch unimportable."""
    code = textwrap.dedent(
        f"""
        import sys, json
        for name in ("torch", "torchvision", "timm"):
            sys.modules[name] = None  # any import of these now raises ImportError
        from fastapi.testclient import TestClient
        from kdiqa.cli_serve import _backend, _description
        from kdiqa.cli import build_parser
        from kdiqa.serve import create_app

        args = build_parser().parse_args(["serve", "--backend", "onnx", "--threads", "1"])
        app = create_app(_backend(args), description=_description(args.model))
        with TestClient(app) as c:
            data = open({str(EXAMPLES / "coffee.jpg")!r}, "rb").read()
            score = c.post("/v1/score", content=data, headers={{"content-type": "image/jpeg"}}).json()
            qmap = c.post("/v1/map?format=png", content=data, headers={{"content-type": "image/jpeg"}})
            model = c.get("/v1/models").json()["models"][0]
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "timm", "scipy")
                        and sys.modules[m] is not None)
        print(json.dumps({{"score": score["results"][0]["score"], "map": qmap.status_code, "model": model,
                           "loaded": loaded}}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["loaded"] == [] and out["map"] == 200
    assert out["model"]["bundled"] == "iqa_effnet_lite0_s4.clive_third_native" and "clive_test" in out["model"]
    assert out["score"] == pytest.approx(83.26, abs=0.05)  # the default model card's figure for coffee.jpg


class Broken:
    """A backend whose forward fails."""

    def __init__(self, backend) -> None:
        self.name, self.cfg = backend.name, backend.cfg

    def predict(self, batch):
        raise RuntimeError("model exploded")


def test_a_failing_model_answers_500_and_the_service_lives_on(backend, caplog):
    app = create_app(Broken(backend))
    with caplog.at_level(logging.INFO, logger="kdiqa.serve"), TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/score", content=png_bytes(), headers=PNG)
        assert r.status_code == 500
        health = c.get("/healthz").json()
        assert health["status"] == "ok" and health["in_flight"] == 0
    failed = [x for x in caplog.records if x.getMessage() == "request failed"]
    assert len(failed) == 1 and failed[0].status == 500 and "model exploded" in failed[0].exc_text


def test_serve_flags_and_app_defaults_agree():
    from kdiqa.cli import build_parser
    from kdiqa.cli_serve import FORMATS
    from kdiqa.serve.app import FORMATS as APP_FORMATS

    args = build_parser().parse_args(["serve"])
    defaults = ServeSettings()
    assert FORMATS == APP_FORMATS and tuple(args.formats) == defaults.formats
    assert (args.max_queue, args.max_batch, args.max_files, args.timeout) == (
        defaults.max_queue,
        defaults.max_batch,
        defaults.max_files,
        defaults.timeout_s,
    )
    assert (
        args.max_upload_mb * 1024 * 1024 == defaults.max_upload_bytes
        and args.max_megapixels * 1e6 == defaults.max_pixels
    )


def test_a_phone_multi_picture_jpeg_is_a_jpeg(backend):
    buf = io.BytesIO()
    synthetic_photo((64, 48)).save(buf, "MPO", save_all=True, append_images=[synthetic_photo((64, 48), seed=1)])
    assert Image.open(io.BytesIO(buf.getvalue())).format == "MPO"
    with client(backend, formats=("JPEG",)) as c:
        r = c.post("/v1/score", content=buf.getvalue(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 200 and 0 <= r.json()["results"][0]["score"] <= 100
