"""The data-engine subcommands of ``kdiqa``: ``pseudo-label``, ``materialize-pool``, ``merge-labels`` and
``match-cache`` (the teacher's outputs on unlabelled images, resumable, sharded by hand or by torchrun's rank).

Importing this module imports nothing heavy.
"""

from __future__ import annotations

import json
import sys


def cmd_pseudo_label(args) -> int:
    from . import distributed
    from .checkpoint import WEIGHTS_NAME, file_sha256
    from .config import load_config
    from .data.pools import PoolConfig, build_items
    from .hub import load, resolve_folder
    from .softlabels import merge_rank_files, parse_shard, pseudo_label, rank_file

    if distributed.env_info().enabled and args.shard != "0/1":
        raise ValueError("under torchrun each process takes shard rank/world: drop --shard")
    place, device = distributed.setup(args.device)  # under torchrun: this process's rank and device
    shard, out = parse_shard(args.shard), args.out
    if place.enabled:
        shard, out = (place.rank, place.world), rank_file(args.out, place.rank, place.world)
    pool = load_config(PoolConfig, args.pool, args.set)
    items = build_items(pool)
    teacher = load(args.teacher, device=str(device))
    sha = file_sha256(resolve_folder(args.teacher) / WEIGHTS_NAME)
    crop = None if args.crop <= 0 else args.crop
    summary = pseudo_label(
        teacher,
        sha,
        items,
        out,
        crop,
        args.views,
        args.flip,
        shard,
        args.batch_size,
        args.workers,
        progress=not args.quiet and place.is_main,
        cache_dir=args.cache,
    )
    failed = sum(distributed.gather(summary["failed"]))
    if place.enabled:  # every shard is complete: rank 0 checks and merges them into --out
        distributed.barrier()
        if place.is_main:
            summary = {**summary, "merged": merge_rank_files(args.out, place.world), "failed": failed}
        distributed.teardown()
    if place.is_main:
        print(json.dumps(summary, indent=2))
        print(f"{summary['images_per_s']} images/s (rank 0)", file=sys.stderr)
    return 1 if failed else 0


def cmd_materialize(args) -> int:
    from .config import load_config
    from .data.pools import PoolConfig, build_items, materialize

    items = build_items(load_config(PoolConfig, args.pool, args.set))
    summary = materialize(items, args.out, args.workers, progress=not args.quiet)
    for err in summary["errors"]:
        print(f"  {err}", file=sys.stderr)
    print(json.dumps({k: v for k, v in summary.items() if k != "errors"} | {"failed": len(summary["errors"])}))
    return 1 if summary["errors"] else 0


def cmd_match_cache(args) -> int:
    from . import distributed
    from .config import load_config
    from .distill.data import matching_images
    from .distill.engine import DistillRunConfig, stage_views
    from .distill.match_cache import fill
    from .engine import labelled_splits
    from .hub import load
    from .softlabels import parse_shard

    cfg = load_config(DistillRunConfig, args.config, args.set)
    if not cfg.matching.cache:
        raise ValueError("the config names no matching.cache file (--set matching.cache=FILE)")
    if not 0 <= args.stage < len(cfg.stages) or cfg.stages[args.stage].data != "views":
        raise ValueError(f"stage {args.stage} of {args.config} is not a `data: views` stage")
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    if distributed.env_info().enabled and args.shard != "0/1":
        raise ValueError("under torchrun each process takes shard rank/world: drop --shard")
    place, device = distributed.setup(args.device)
    shard = parse_shard(args.shard)
    if place.enabled:  # each process scores the views of its shard into the one file (SQLite serialises writers)
        shard = (place.rank, place.world)
    images = matching_images(cfg, labelled_splits(cfg.labelled)[2])
    views, _ = stage_views(cfg, args.stage, images)
    teacher = load(cfg.teacher, device=str(device))
    n = min(args.first, len(views)) if args.first else len(views)
    show = not args.quiet and place.is_main
    summary = fill(teacher, views, cfg.matching.cache, n, shard, args.batch_size, args.workers, show)
    if place.enabled:
        distributed.barrier()
        if place.is_main:
            summary = {**summary, **fill(teacher, views, cfg.matching.cache, n, (0, 1), progress=False)}
        distributed.teardown()
    if place.is_main:
        print(json.dumps(summary, indent=2))
    return 0


def cmd_merge_labels(args) -> int:
    from .softlabels import merge_shards

    print(json.dumps(merge_shards(args.shards, args.out), indent=2))
    return 0
