"""The ``kdiqa`` command line: train, evaluate, score, list-models, list-datasets.

``score`` and ``evaluate`` run in :mod:`kdiqa.cli_predict`, ``export`` and ``benchmark`` in :mod:`kdiqa.cli_deploy`,
``serve`` in :mod:`kdiqa.cli_serve`, the data engine (``pseudo-label``, ``materialize-pool``, ``merge-labels``,
``match-cache``) in :mod:`kdiqa.cli_data`.
"""

from __future__ import annotations

import argparse
import json
import sys


def _device(args) -> list[str]:
    """``--device X`` as a config override (``--set`` still wins)."""
    return [f"device={args.device}"] if args.device else []


def _finish(summary: dict) -> int:
    """Prints a training command's summary (rank 0 under torchrun) and leaves the process group."""
    from . import distributed

    if distributed.is_main():
        print(json.dumps(summary, indent=2, default=str))
    distributed.teardown()
    return 0


def _cmd_train(args) -> int:
    from .config import load_config
    from .engine import TrainConfig, fit

    cfg = load_config(TrainConfig, args.config, _device(args) + args.set)
    return _finish(fit(cfg, progress=not args.quiet))


def _cmd_pretext(args) -> int:
    from .config import load_config
    from .pretext import PretextConfig, pretrain

    return _finish(pretrain(load_config(PretextConfig, args.config, _device(args) + args.set), progress=not args.quiet))


def _cmd_distill(args) -> int:
    from .config import load_config
    from .distill.engine import DistillRunConfig, distill
    from .distill.quickstart import flag_overrides

    overrides = flag_overrides(args, from_file=args.config is not None) + _device(args) + args.set
    return _finish(distill(load_config(DistillRunConfig, args.config, overrides), progress=not args.quiet))


def _cmd_average(args) -> int:
    from .checkpoint import average_checkpoints

    print(average_checkpoints(args.checkpoints, args.out, args.weights))
    return 0


def _cmd_prune(args) -> int:
    from .checkpoint import save_model
    from .hub import load
    from .models.pruning import prune
    from .models.zoo import MODELS, create_model

    if args.model in MODELS:
        model = create_model(args.model, pretrained=args.pretrained, input_pool=args.input_pool)
    elif args.input_pool != 1:
        raise ValueError(f"--input-pool applies to an architecture name; {args.model} keeps its own")
    else:
        model = load(args.model)
    before = model.num_params()
    pruned = prune(model, args.ratio, args.size)
    save_model(pruned, args.out, {"pruned_from": args.model, "pruning_ratio": args.ratio})
    print(f"{args.out}: {before / 1e6:.2f} M → {pruned.num_params() / 1e6:.2f} M parameters")
    return 0


def _cmd_list_models(args) -> int:
    from .models.pretrained import ALIASES, PRETRAINED_TAGS, installed, split_name
    from .models.zoo import create_model, list_models

    if args.pretrained:
        print("name\tCLIVE test SRCC\tPLCC\tparams\tGMACs@500\timages/s onnx\timages/s torch\twhat")
        for name in list_models(args.filter, pretrained=True):
            arch, tag = split_name(name)
            aliases = [a for a, t in ALIASES.items() if t == name]
            alias = f"  (alias: {', '.join(aliases)})" if aliases else ""
            card = _card(name) if name in installed() else None
            figures = "\t".join(card) if card else "\t".join("–" * 6)
            note = "" if card else "  [weights not installed]"
            print(f"{name}\t{figures}\t{PRETRAINED_TAGS[arch][tag]}{alias}{note}")
        return 0
    for name in list_models(args.filter):
        line = name
        if args.verbose:
            m = create_model(name)
            line += f"\t{m.cfg.arch}\t{m.num_params() / 1e6:.2f}M params\tstages: " + ",".join(
                f"{f['num_chs']}@/{f['reduction']}" for f in m.feature_info
            )
        print(line)
    return 0


def _card(name: str) -> tuple[str, ...]:
    """A bundled model's figures: CLIVE test SRCC and PLCC and its speed (recorded in its config.json by
    ``benchmarks/bundle_figures.py``; "–" where none is recorded) and its parameter count."""
    import numpy as np
    from safetensors import safe_open

    from .models.pretrained import weights_folder

    folder = weights_folder(name)
    config = json.loads((folder / "config.json").read_text())
    test, speed = config.get("clive_test", {}), config.get("speed", {})
    with safe_open(str(folder / "model.safetensors"), framework="np") as f:
        names = [k for k in f.keys() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]  # noqa: SIM118
        params = sum(int(np.prod(f.get_slice(k).get_shape())) for k in names)
    srcc, plcc = (f"{test[k]:.3f}" if k in test else "–" for k in ("srcc", "plcc"))
    gmacs = f"{speed['macs'] / 1e9:.2f}" if "macs" in speed else "–"
    rates = (f"{speed[k]:.0f}" if k in speed else "–" for k in ("onnx_fp32_images_per_s", "torch_images_per_s"))
    return srcc, plcc, f"{params / 1e6:.2f} M", gmacs, *rates


def _cmd_list_datasets(args) -> int:
    from .data import adapters  # noqa: F401
    from .data.datasets import DATASETS

    for name in DATASETS.names():
        summary = " ".join((DATASETS.get(name).__doc__ or "").strip().split("\n\n")[0].split())
        print(f"{name}\t{summary}")
    print("csv:PATH\ta CSV with columns image,mos[,std,split]")
    return 0


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="checkpoint folder, bundled name or 'default'")
    p.add_argument("--mode", choices=("full", "center", "crops"), help="test-time views (model default)")
    p.add_argument("--crop", type=int, help="crop size for center/crops (model default)")
    p.add_argument(
        "--n-crops",
        type=int,
        help="crops for --mode crops: 5 = centre + corners, 9 = 3x3 grid, 25 = 5x5; flips double it",
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=0, help="image-decoding threads (0: decode in the main thread)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .cli_data import cmd_match_cache, cmd_materialize, cmd_merge_labels, cmd_pseudo_label
    from .cli_deploy import add_deploy_parsers
    from .cli_predict import cmd_evaluate, cmd_score
    from .cli_serve import add_serve_parser

    parser = argparse.ArgumentParser(
        prog="kdiqa", description="No-reference image quality assessment with knowledge distillation."
    )
    parser.add_argument("--version", action="version", version=f"kdiqa {__version__}")
    parser.add_argument(
        "--data-root",
        metavar="DIR",
        help="folder of the datasets (DIR/clive, ...); `data:` paths in configs resolve against it "
        "(default: $KDIQA_DATA)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="supervised IQA training from a YAML config")
    p.add_argument("--config", required=True, help="YAML file (see configs/)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.epochs=3 (repeatable)",
    )
    p.add_argument(
        "--device",
        help="auto | cpu | cuda | cuda:i (default: the config's, auto); under torchrun cuda = the process's GPU",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=_cmd_train)

    p = sub.add_parser("evaluate", help="SRCC/PLCC/KRCC/RMSE of a model on a dataset split")
    p.add_argument("--dataset", required=True, help="adapter name (kdiqa list-datasets) or csv:PATH")
    p.add_argument("--root", help="the dataset's folder (official layout)")
    p.add_argument("--split", default="test", help="train | val | test | all (default: test)")
    p.add_argument(
        "--split-index", type=int, default=0, help="which seeded 80/20 split, for datasets without an official one"
    )
    p.add_argument("--split-seed", type=int, default=0, help="seed of that split (as data.split_seed in training)")
    p.add_argument(
        "--val-fraction", type=float, default=0.0, help="carve a val split out of train, as data.val_fraction did"
    )
    p.add_argument("--val-seed", type=int, default=0, help="seed of that carving (as data.val_seed)")
    p.add_argument("--output", help="write the metrics (and per-image predictions) to this JSON file")
    p.add_argument("--plot", help="write a scatter plot (prediction vs MOS, fitted curve) to this PNG")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    p.add_argument(
        "--strict", action="store_true", help="stop at the first unreadable image (default: report it, score the rest)"
    )
    _add_eval_args(p)
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("score", help="score image files, folders or globs")
    p.add_argument("paths", nargs="+", help="image files, folders (recursive) or glob patterns")
    p.add_argument("--output", help="results file: .csv (written as it goes) or .json")
    p.add_argument("--resume", action="store_true", help="skip images already scored in the --output CSV")
    _add_eval_args(p)
    p.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        default="torch",
        help="torch (checkpoints) or onnx (onnxruntime without torch: a folder from `kdiqa export`, or a bundled "
        "model's export, e.g. the default)",
    )
    p.add_argument("--int8", action="store_true", help="with --backend onnx: the int8 model of the folder")
    p.add_argument("--threads", type=int, help="intra-op threads (torch.set_num_threads / onnxruntime)")
    p.add_argument("--map", metavar="DIR", help="also write a quality map per image: DIR/NAME.png (overlay) + .json")
    p.add_argument(
        "--map-patch", type=int, help="map patch size in pixels (default: the model's crop, <= half the side)"
    )
    p.add_argument("--map-stride", type=int, help="map grid step in pixels (default: half the patch)")
    p.set_defaults(fn=cmd_score)

    p = sub.add_parser("pseudo-label", help="teacher soft labels for an unlabelled pool (resumable, shardable)")
    p.add_argument("--teacher", default="teacher", help="teacher checkpoint folder or bundled name")
    p.add_argument("--pool", required=True, help="pool YAML (sources, distortions; see configs/pool/default.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a pool value")
    p.add_argument("--out", required=True, help="SQLite file; an existing one is resumed")
    p.add_argument("--crop", type=int, default=384, help="view size in px (0: full image)")
    p.add_argument("--views", type=int, default=1, help="crops per item (centre + random); mean and std kept")
    p.add_argument("--flip", action="store_true", help="add mirrored views")
    p.add_argument("--shard", default="0/1", help="i/n: this process takes items with id %% n == i")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=1, help="decoding/distortion worker processes")
    p.add_argument("--cache", help="folder written by `kdiqa materialize-pool` (distorted items read from disk)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_pseudo_label)

    p = sub.add_parser("materialize-pool", help="write a pool's distorted images to disk (resumable)")
    p.add_argument("--pool", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True, help="cache folder")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_materialize)

    p = sub.add_parser("pretext", help="self-supervised pre-training: distortion type + level ranking")
    p.add_argument("--config", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:i (default: the config's)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=_cmd_pretext)

    p = sub.add_parser("distill", help="multi-stage knowledge distillation (none/response/hints/review)")
    p.add_argument("--config", help="a distillation YAML; without it, the quick-start recipe (docs/own-data.md)")
    p.add_argument("--teacher", help="teacher: bundled name or checkpoint folder (default: teacher)")
    p.add_argument("--labelled", help="the rated images: a dataset name or csv:FILE (image,mos[,std,split])")
    p.add_argument("--unlabelled", action="append", help="a folder (or CSV) of unrated images; repeatable")
    p.add_argument("--student", help="registered student architecture (default: iqa_mobilenetv3_small_050)")
    p.add_argument("--method", help="none | response | hints | review (default: response)")
    p.add_argument("--views", type=int, help="quick-start recipe: function-matching views (default: 50000)")
    p.add_argument("--out", help="run folder (out_dir)")
    p.add_argument("--seed", type=int)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config value; wins")
    p.add_argument(
        "--device",
        help="auto | cpu | cuda | cuda:i (default: the config's, auto); under torchrun cuda = the process's GPU",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=_cmd_distill)

    p = sub.add_parser("match-cache", help="the teacher's scores of a function-matching stage's views (resumable)")
    p.add_argument("--config", required=True, help="the distillation YAML (its matching.cache is written)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--stage", type=int, default=0, help="index of the `data: views` stage")
    p.add_argument("--shard", default="0/1", help="i/n: this process scores the views with index %% n == i")
    p.add_argument("--first", type=int, help="only views 0 .. N-1 (a later call continues)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=1, help="view-rendering worker processes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_match_cache)

    p = sub.add_parser("average", help="average the weights of checkpoints of one architecture (model soup)")
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--weights", type=float, nargs="+", help="one weight per checkpoint (default: equal)")
    p.set_defaults(fn=_cmd_average)

    p = sub.add_parser("prune", help="remove a share of every layer's channels (torch-pruning); loads without it")
    p.add_argument("--model", required=True, help="architecture name, bundled name or checkpoint folder")
    p.add_argument("--pretrained", default="imagenet", help="with an architecture name: none | imagenet | hub")
    p.add_argument("--ratio", type=float, required=True, help="share of each layer's channels removed, in (0, 1)")
    p.add_argument("--size", type=int, default=224, help="side of the example input traced for the dependencies")
    p.add_argument("--input-pool", type=int, default=1, help="with an architecture name: ModelConfig.input_pool")
    p.add_argument("--out", required=True, help="checkpoint folder to write (e.g. a distillation's student_init)")
    p.set_defaults(fn=_cmd_prune)

    p = sub.add_parser("merge-labels", help="merge pseudo-label shards after checking completeness")
    p.add_argument("shards", nargs="+")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_merge_labels)

    add_deploy_parsers(sub)  # export, benchmark (kdiqa/cli_deploy.py)
    add_serve_parser(sub)  # serve (kdiqa/cli_serve.py)

    p = sub.add_parser("list-models", help="registered architectures (or --pretrained weights)")
    p.add_argument("filter", nargs="?", help="glob pattern, e.g. '*lite*'")
    p.add_argument(
        "--pretrained",
        action="store_true",
        help="list bundled weights with their CLIVE test SRCC/PLCC, params, GMACs and images/s",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="parameters and feature maps")
    p.set_defaults(fn=_cmd_list_models)

    p = sub.add_parser("list-datasets", help="dataset adapters")
    p.set_defaults(fn=_cmd_list_datasets)
    return parser


# top-level modules of the `torch` extra (pyproject.toml); the base install is the ONNX runtime's
TORCH_EXTRA = {"torch", "torchvision", "timm", "scipy", "safetensors", "yaml"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.data_root:
        from .paths import set_data_root

        set_data_root(args.data_root)
    try:
        return args.fn(args)
    except (KeyError, ValueError, FileNotFoundError, FileExistsError, ImportError) as exc:
        # User errors (unknown names, bad configs, missing files): one line, no traceback.
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        if isinstance(exc, ModuleNotFoundError) and exc.name in TORCH_EXTRA:
            msg += " (this command needs `pip install kdiqa[torch]`; `kdiqa score --backend onnx` does not)"
        print(f"kdiqa {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
