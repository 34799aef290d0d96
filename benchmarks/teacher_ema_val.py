"""The weight-EMA check for the teacher recipe (validation only): EMA against raw weights, epoch by epoch.

``kdiqa train`` with ``optim.ema_decay`` validates the EMA weights and the raw weights on the same
validation images after every epoch (``val_*`` and ``raw_val_*`` in ``history.jsonl``). The EMA is
adopted if, at the last epoch, its val SRCC and PLCC are both at least the raw weights', and its mean of
(SRCC + PLCC) / 2 over the last three epochs is higher.

    kdiqa train --config configs/experiments/teacher_recipes/teacher_ema.yaml --set threads=2
    python benchmarks/teacher_ema_val.py runs/teacher_recipes/ema --out benchmarks/results/teacher_ema_val.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kdiqa.bench.results import write_result


def decide(history: list[dict], last_k: int = 3) -> dict:
    """The rule's verdict and the figures it rests on."""
    if not history or "raw_val_srcc" not in history[-1]:
        raise ValueError("the run has no paired EMA/raw validation record (was optim.ema_decay set?)")
    last = history[-1]

    def mean_of(prefix: str) -> float:
        tail = history[-last_k:]
        return sum((h[f"{prefix}val_srcc"] + h[f"{prefix}val_plcc"]) / 2 for h in tail) / len(tail)

    ema_tail, raw_tail = mean_of(""), mean_of("raw_")
    at_last = last["val_srcc"] >= last["raw_val_srcc"] and last["val_plcc"] >= last["raw_val_plcc"]
    return {
        "adopt_ema": bool(at_last and ema_tail > raw_tail),
        "last_epoch": {k: last[k] for k in ("epoch", "val_srcc", "val_plcc", "raw_val_srcc", "raw_val_plcc")},
        f"mean_last_{last_k}": {"ema": ema_tail, "raw": raw_tail},
    }


def markdown(history: list[dict], verdict: dict) -> str:
    lines = ["| epoch | EMA SRCC | EMA PLCC | raw SRCC | raw PLCC |", "|---|---|---|---|---|"]
    for h in history:
        vals = " | ".join(f"{h[k]:.4f}" for k in ("val_srcc", "val_plcc", "raw_val_srcc", "raw_val_plcc"))
        lines.append(f"| {h['epoch']} | {vals} |")
    lines.append("")
    lines.append(f"EMA adopted: **{'yes' if verdict['adopt_ema'] else 'no'}**")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a finished kdiqa train run folder trained with optim.ema_decay")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    run = Path(args.run)
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines() if line.strip()]
    verdict = decide(history)
    payload = {"run": str(run), "split": "val", **verdict, "history": history}
    out = Path(args.out)
    write_result(out, payload, markdown(history, verdict))
    print(markdown(history, verdict))


if __name__ == "__main__":
    main()
