"""How much the headline speed figures move on this (shared, virtualised) CPU: repeated, interleaved runs.

The full benchmark (``benchmarks/speed.py``) times each cell once. On this machine the same ONNX
model's median latency has moved by up to 2x within minutes (other tenants of the host), so this
script times the default student and the teacher (ONNX Runtime fp32, batch 1, one size) in
``--rounds`` alternating rounds and reports every round plus the median and range of the student's
images/s and of the per-round student/teacher ratio. Writes ``benchmarks/results/speed_repeat.json``
and ``.md``.

    python benchmarks/speed_repeat.py --threads 2 --rounds 10
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from kdiqa import load
from kdiqa.export.onnx import export_fp32, preprocess_config
from kdiqa.profiling import measure_latency
from kdiqa.runtime import OnnxScorer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", default="default")
    ap.add_argument("--teacher", default="teacher")
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=2.0, help="timing per model per round")
    ap.add_argument("--out", default="benchmarks/results/speed_repeat.json")
    args = ap.parse_args()

    x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="kdiqa-speed-") as tmp:
        scorers = {}
        for role, name in (("student", args.student), ("teacher", args.teacher)):
            model = load(name)
            folder = Path(tmp) / role
            folder.mkdir()
            export_fp32(model, folder / "model.onnx")
            preprocess_config(model).write(folder)
            scorers[role] = (model.name, OnnxScorer(folder, "fp32", threads=args.threads))
        for k in range(args.rounds):
            row = {"round": k, "time": time.strftime("%H:%M:%S")}
            for role, (_, scorer) in scorers.items():
                r = measure_latency(lambda s=scorer: s.predict(x), warmup=3, iters=5, min_seconds=args.seconds)
                row[f"{role}_p50_ms"] = r["p50_ms"]
            row["student_images_per_s"] = 1e3 / row["student_p50_ms"]
            row["ratio"] = row["teacher_p50_ms"] / row["student_p50_ms"]
            rounds.append(row)
            print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}), flush=True)

    def stats(key: str) -> dict:
        v = np.array([r[key] for r in rounds])
        return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())}

    result = {
        "basis": f"ONNX Runtime fp32, {args.size}x{args.size}, batch 1, p50 per round, {args.threads} threads",
        "student": scorers["student"][0],
        "teacher": scorers["teacher"][0],
        "student_images_per_s": stats("student_images_per_s"),
        "student_vs_teacher": stats("ratio"),
        "rounds": rounds,
        "command": f"python benchmarks/speed_repeat.py --threads {args.threads} --rounds {args.rounds}",
    }
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=2))
    s, q = result["student_images_per_s"], result["student_vs_teacher"]
    md = [
        f"# Repeated speed rounds ({result['basis']})",
        "",
        f"- {result['student']} images/s: median **{s['median']:.1f}** (range {s['min']:.1f}–{s['max']:.1f})",
        f"- student / teacher ({result['teacher']}), same round: median **{q['median']:.1f}x** "
        f"(range {q['min']:.1f}–{q['max']:.1f})",
        "",
        "| round | time | student p50 ms | teacher p50 ms | student img/s | ratio |",
        "|---|---|---|---|---|---|",
    ]
    md += [
        f"| {r['round']} | {r['time']} | {r['student_p50_ms']:.2f} | {r['teacher_p50_ms']:.1f} "
        f"| {r['student_images_per_s']:.1f} | {r['ratio']:.1f} |"
        for r in rounds
    ]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
