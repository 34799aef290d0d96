"""The Markdown table of a speed benchmark result (``benchmarks/results/speed.md``)."""

from __future__ import annotations


def _f(x, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def markdown(result: dict) -> str:
    """Summary lines, one table row per (model, backend, size), and the peers that were skipped."""
    o = result["options"]
    size = 500 if 500 in o["sizes"] else max(o["sizes"])
    lines = [
        f"# Speed benchmark{' (QUICK smoke run: few iterations, not for quoting)' if result['quick'] else ''}",
        "",
        f"{result['cpu']}, {o['threads']} threads (torch.set_num_threads / onnxruntime intra-op), "
        f"warm-up {o['warmup']}, up to {o['iters']} timed calls per cell (~{o['budget_s']} s budget); "
        f"load average at start {result['load_average_at_start']}.",
        f"fp32 peak estimate: {result['peak_fp32']['gflops']:.1f} GFLOP/s ({result['peak_fp32']['method']}).",
        "",
        f"- default student ONNX fp32, {size}x{size}, batch 1: "
        f"**{_f(result.get(f'student_onnx_fp32_{size}_images_per_s'), '.1f')} images/s** "
        f"({_f(result.get(f'student_onnx_fp32_{size}_peak_fraction'), '.1%')} of fp32 peak)",
        f"- student / teacher (same backend, size, batch, run): **{_f(result.get('student_vs_teacher'), '.1f')}x**; "
        f"vs teacher in torch eager: "
        f"{_f(result['student_vs_teacher_detail'].get('student_onnx_fp32_vs_teacher_torch'), '.1f')}x",
        f"- int8 / fp32 file size of the default student: 1/{_f(result.get('student_int8_size_ratio'), '.2f')}",
        f"- int8 SRCC drop: {_f(result.get('int8_srcc_drop'), '+.4f')} ({result.get('int8_srcc_drop_basis')})",
        "",
        "Latency is the median (p50) and 90th percentile of single-image calls; throughput is images/s at "
        f"batch {o['batch']} (median call). MACs are per image (torch FlopCounterMode: convolutions and "
        "matrix products). % peak = MACs x 2 / p50 time / fp32 peak.",
        "",
        f"| model | role | backend | size | params (M) | GMACs | file (MB) | p50 ms | p90 ms | img/s b1 "
        f"| img/s b{o['batch']} | % fp32 peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    bkey = f"images_per_s_b{o['batch']}"
    for r in result["rows"]:
        params = _f(r["params"] / 1e6 if r["params"] else None, ".2f")
        macs = _f(r["macs"] / 1e9 if r["macs"] else None, ".3f")
        lines.append(
            f"| {r['model']} | {r['role']} | {r['backend']} | {r['size']} | {params} | {macs} "
            f"| {_f(r.get('file_mb'), '.2f')} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['images_per_s_b1']:.1f} "
            f"| {_f(r.get(bkey), '.1f')} | {_f(r['peak_fraction'], '.1%')} |"
        )
    notes = sorted({f"{r['model']}: {r['notes']}" for r in result["rows"] if r.get("notes")})
    if notes:
        lines += ["", "Peers: " + "; ".join(notes) + "."]
    for s in result["skipped"]:
        lines.append(f"- skipped {s['model']}: {s['reason']}")
    return "\n".join(lines) + "\n"
