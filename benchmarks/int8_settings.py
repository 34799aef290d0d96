"""int8 settings for a model, compared on rated images that are not CLIVE ``test``.

Each setting (calibration method × calibration images × float front end) is one ``kdiqa export --int8`` of the
same model; its int8 file is compared with the fp32 one on the first ``--limit`` images of a labelled split
(CLIVE ``train`` by default, so the choice never looks at ``test``): rank agreement with torch, mean and max
|difference| of the normalised scores, the SRCC drop against MOS, and the file size. The chosen setting's ``test``
drop is then measured once, by ``benchmarks/speed.py`` or ``kdiqa export --parity-dataset clive``.

    python benchmarks/int8_settings.py --model default --out benchmarks/results/int8_settings.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

from kdiqa import load
from kdiqa.bench.results import write_result
from kdiqa.checkpoint import WEIGHTS_NAME, file_sha256
from kdiqa.export import ExportOptions, export_model
from kdiqa.hub import resolve_folder
from kdiqa.models.pretrained import resolve_name


def setting_name(method: str, n: int, stride: int) -> str:
    """A short label, e.g. ``minmax-64-s8``."""
    return f"{method}-{n}-s{stride}"


def row(name: str, report: dict) -> dict:
    """The figures of one export that the table compares."""
    lab, int8 = report["parity_labelled"], report["int8"]
    return {
        "setting": name,
        "method": int8["calibration_method"],
        "calibration_images": int8["calibration_images"],
        "float_stride": int8["float_front_end"]["max_stride"],
        "size_ratio": int8["size_ratio_fp32_over_int8"],
        "int8_mb": report["files"]["int8"]["bytes"] / 1e6,
        "srcc_vs_torch": lab["int8"]["srcc_vs_torch"],
        "mean_abs_diff": lab["int8"]["mean_abs_diff_vs_torch"],
        "max_abs_diff": lab["int8"]["max_abs_diff_vs_torch"],
        "srcc_drop_vs_fp32": lab["int8"]["srcc_drop_vs_fp32"],
        "seconds": report["seconds"].get("quantize_int8"),
    }


def markdown(result: dict) -> str:
    lines = [
        f"int8 settings for `{result['weights']}` (weights sha256 {result['weights_sha256']}…) on {result['split']} "
        f"(n = {result['n']}); calibration source {result['calibration']}",
        "",
        "| setting | fp32/int8 size | int8 MB | rank agreement | mean \\|Δ\\| | max \\|Δ\\| | SRCC drop | quantise s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    fields = [
        ("size_ratio", ".2f"),
        ("int8_mb", ".3f"),
        ("srcc_vs_torch", ".4f"),
        ("mean_abs_diff", ".4f"),
        ("max_abs_diff", ".4f"),
        ("srcc_drop_vs_fp32", "+.4f"),
        ("seconds", ".0f"),
    ]
    for r in result["rows"]:  # a correlation of constant scores is null in the JSON: shown as –
        cells = ["–" if r[k] is None else format(r[k], f) for k, f in fields]
        lines.append(f"| {r['setting']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--calibration", default="configs/pool/default.yaml", help="folder of images or pool YAML")
    ap.add_argument("--methods", nargs="+", default=["minmax", "percentile", "entropy"])
    ap.add_argument("--calib-images", nargs="+", type=int, default=[64])
    ap.add_argument("--float-strides", nargs="+", type=int, default=[8])
    ap.add_argument("--dataset", default="clive")
    ap.add_argument("--root", help="the dataset's folder (default: <data root>/<dataset>)")
    ap.add_argument("--split", default="train", help="never test: the choice must not look at it")
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/int8_settings.json")
    args = ap.parse_args()
    if args.split == "test":
        raise SystemExit("--split test: settings are chosen on other images; measure the chosen one on test once")
    model = load(args.model)
    # rows are reused only for the very same weights: an alias ("edge") may have moved to other weights
    digest = file_sha256(resolve_folder(args.model) / WEIGHTS_NAME)[:16]
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    same = [previous.get(k) for k in ("weights_sha256", "calibration", "split", "n")] == [
        digest,
        args.calibration,
        args.split,
        args.limit,
    ]
    done = {r["setting"]: r for r in previous.get("rows", [])} if same else {}  # reruns add settings, resumably
    t0 = time.time()
    rows = []
    for method, n, stride in itertools.product(args.methods, args.calib_images, args.float_strides):
        name = setting_name(method, n, stride)
        if name not in done:
            opts = ExportOptions(
                int8=True,
                calibration=args.calibration,
                calib_images=n,
                calib_method=method,
                float_stride=stride,
                parity_dataset=args.dataset,
                parity_root=args.root,
                parity_split=args.split,
                parity_limit=args.limit,
                threads=args.threads,
            )
            with tempfile.TemporaryDirectory(prefix="kdiqa-int8-") as tmp:
                done[name] = row(name, export_model(model, tmp, opts, source=args.model))
            print(json.dumps(done[name]), flush=True)
        rows.append(done[name])
    result = {
        "model": model.name,
        "weights": resolve_name(args.model),
        "weights_sha256": digest,
        "calibration": args.calibration,
        "split": args.split,
        "n": args.limit,
        "rows": rows,
        "command": "python benchmarks/int8_settings.py "
        + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
        ),
        "wall_seconds": round(time.time() - t0, 1),
    }
    write_result(out, result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
