"""Records each bundled model's measured speed in its config.json, where ``kdiqa list-models --pretrained``
reads it (GMACs, ONNX Runtime fp32 and torch images/s at batch 1).

The figures come from one run of the speed benchmark that timed every bundled model on the same machine
at the same size and threads:

    python benchmarks/speed.py --threads 2 --budget 3 --peers none --sizes 500 --no-int8 \\
        --students <the other bundled names> --out benchmarks/results/speed_bundled.json
    python benchmarks/bundle_figures.py --speed benchmarks/results/speed_bundled.json

A bundle that only changed another's weights (same architecture, ``input_pool`` and head, so the same graph and
cost) can take that bundle's figures from the run: ``--same-graph NEW=TIMED``. The entry says so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kdiqa.models.pretrained import installed, weights_folder

BACKENDS = {"onnx_fp32": "onnx_fp32_images_per_s", "torch": "torch_images_per_s"}


def figures(speed: dict, name: str, size: int) -> dict | None:
    """The ``speed`` entry of bundled ``name``: its rows of the benchmark at ``size`` (None if untimed).

    Rows are matched on the exact ``arch.tag`` they timed; a row recorded under an alias (``default``) is not
    used, since the alias may name another bundle today than when the benchmark ran.
    """
    rows = [r for r in speed["rows"] if r.get("weights") == name and r["size"] == size]
    rows = [r for r in rows if r["backend"] in BACKENDS]
    if not rows:
        return None
    out = {"size": size, "batch": 1, "threads": speed["options"].get("threads"), "macs": rows[0]["macs"]}
    out.update({BACKENDS[r["backend"]]: round(r["images_per_s_b1"], 1) for r in rows})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed", default="benchmarks/results/speed_bundled.json")
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--same-graph", nargs="*", default=[], metavar="NEW=TIMED", help="NEW takes TIMED's figures")
    args = ap.parse_args()
    speed = json.loads(Path(args.speed).read_text())
    twins = dict(pair.split("=", 1) for pair in args.same_graph)
    for name, timed in twins.items():
        ours, theirs = (
            json.loads((weights_folder(n) / "config.json").read_text())["kdiqa_model"] for n in (name, timed)
        )
        if ours != theirs:
            raise SystemExit(f"{name} and {timed} differ in their model config: time {name} itself")
    for name in installed():
        entry = figures(speed, twins.get(name, name), args.size)
        if entry is None:
            print(f"{name}: not in {args.speed}, left as it is")
            continue
        path = weights_folder(name) / "config.json"
        config = json.loads(path.read_text())
        config["speed"] = {**entry, "source": args.speed}
        if name in twins:
            config["speed"]["timed_as"] = f"{twins[name]} (the same architecture and graph, other weights)"
        path.write_text(json.dumps(config, indent=2) + "\n")
        print(f"{name}: {config['speed']}")


if __name__ == "__main__":
    main()
