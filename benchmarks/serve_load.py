"""A bounded load test of `kdiqa serve` on the loopback interface: requests/s, latency and errors.

For each model, a `kdiqa serve` process is started (torch backend, --threads), then N client threads post
the same photo to POST /v1/score as raw bytes, one request after another, until ``--requests`` answers are
in or ``--time-limit`` seconds have passed. Each cell records requests/s (answered 200), p50/p99 latency
of the 200s, 503s (the queue was full: expected only when clients outnumber --max-queue), other errors
(must be 0), and how many requests each forward pass served (the service's micro-batching counters).
Micro-batching is measured by running the same cells with --max-batch 1.

The clients run in this process, on the same cores as the service: on a small machine they take part of
the CPU the model would otherwise have.

    python benchmarks/serve_load.py --models edge teacher --out benchmarks/results/serve_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from kdiqa.serve.local import free_port

ROOT = Path(__file__).resolve().parents[1]


def start_server(model: str, port: int, threads: int, max_batch: int, max_queue: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "kdiqa", "serve", "--model", model, "--port", str(port), "--threads", str(threads)]
    cmd += ["--max-batch", str(max_batch), "--max-queue", str(max_queue)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"kdiqa serve --model {model} did not start")


def run_cell(url: str, body: bytes, clients: int, requests: int, time_limit: float) -> dict:
    """``clients`` threads post ``body`` until ``requests`` answers or ``time_limit`` seconds."""
    lock = threading.Lock()
    issued = [0]
    latencies, statuses = [], []
    stop = time.monotonic() + time_limit

    def client():
        with httpx.Client(timeout=60) as http:
            while True:
                with lock:
                    if issued[0] >= requests or time.monotonic() > stop:
                        return
                    issued[0] += 1
                t0 = time.perf_counter()
                try:
                    status = http.post(
                        url + "/v1/score", content=body, headers={"content-type": "image/jpeg"}
                    ).status_code
                except httpx.TransportError:
                    status = -1
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    statuses.append(status)

    before = httpx.get(url + "/healthz").json()["batching"]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client) for _ in range(clients)]:
            f.result()
    wall = time.perf_counter() - t0
    after = httpx.get(url + "/healthz").json()["batching"]
    ok = np.array([lat for lat, s in zip(latencies, statuses, strict=True) if s == 200])
    jobs, batches = after["jobs"] - before["jobs"], after["batches"] - before["batches"]
    return {
        "clients": clients,
        "answered": len(statuses),
        "ok": len(ok),
        "rejected_503": statuses.count(503),
        "errors": len([s for s in statuses if s not in (200, 503)]),
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(ok) / wall, 2),
        "p50_ms": round(float(np.percentile(ok, 50)) * 1000, 1) if len(ok) else None,
        "p99_ms": round(float(np.percentile(ok, 99)) * 1000, 1) if len(ok) else None,
        "requests_per_forward": round(jobs / batches, 2) if batches else None,
    }


def table(rows: list[dict]) -> str:
    head = "| model | micro-batching | clients | req/s | p50 ms | p99 ms | 503 | errors | req/forward |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mb = f"up to {r['max_batch']}" if r["max_batch"] > 1 else "off"
        lines.append(
            f"| {r['model']} | {mb} | {r['clients']} | {r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} "
            f"| {r['rejected_503']} | {r['errors']} | {r['requests_per_forward']} |"
        )
    return "\n".join(lines)


def markdown(meta: dict, rows: list[dict]) -> str:
    settings = "\n".join(f"- {k.replace('_', ' ')}: {v}" for k, v in meta.items())
    return f"# kdiqa serve under load\n\n{settings}\n\n{table(rows)}\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["edge", "teacher"])
    ap.add_argument("--image", default=str(ROOT / "examples" / "images" / "astronaut.jpg"))
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrency levels")
    ap.add_argument("--overload", type=int, default=32, help="clients for the over-the-queue cell (0: none)")
    ap.add_argument("--max-queue", type=int, default=16, help="the service's queue (places)")
    ap.add_argument("--max-batch", type=int, default=16, help="micro-batching cells: views per forward")
    ap.add_argument("--requests", type=int, default=200, help="answers per cell at most")
    ap.add_argument("--time-limit", type=float, default=45.0, help="seconds per cell at most")
    ap.add_argument("--threads", type=int, default=2, help="the service's model threads")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve_load.json"))
    args = ap.parse_args()
    body = Path(args.image).read_bytes()
    rows = []
    for model in args.models:
        for max_batch in (args.max_batch, 1):
            port = free_port()
            proc = start_server(model, port, args.threads, max_batch, args.max_queue)
            try:
                url = f"http://127.0.0.1:{port}"
                run_cell(url, body, 2, 10, 30)  # warm-up
                levels = args.clients + ([args.overload] if args.overload and max_batch > 1 else [])
                for clients in levels:
                    row = {"model": model, "max_batch": max_batch, "max_queue": args.max_queue}
                    row.update(run_cell(url, body, clients, args.requests, args.time_limit))
                    print(json.dumps(row), flush=True)
                    rows.append(row)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    meta = {
        "image": Path(args.image).name,
        "endpoint": "POST /v1/score, raw bytes, one image per request",
        "service": f"kdiqa serve --threads {args.threads} --max-queue {args.max_queue} (torch backend, CPU)",
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "requests_per_cell": args.requests,
        "time_limit_s": args.time_limit,
        "note": "clients run on the same cores as the service",
    }
    out = Path(args.out)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    out.with_suffix(".md").write_text(markdown(meta, rows))
    print(table(rows))


if __name__ == "__main__":
    main()
