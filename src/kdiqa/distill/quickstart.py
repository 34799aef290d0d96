"""``kdiqa distill`` without a YAML: flags for the common case, over a built-in recipe.

``kdiqa distill --teacher T --labelled csv:my_scores.csv --unlabelled my_photos/ --student NAME --out runs/x``
trains ``NAME`` from teacher ``T``: first on fresh function-matching views of the unlabelled images, scored by
the teacher (``--views`` of them), then jointly on the MOS and the teacher, then on the MOS alone. With
``--config FILE`` the flags override that file instead; ``--set KEY=VALUE`` overrides either, last.

Example:
    >>> from argparse import Namespace
    >>> flags = Namespace(teacher="teacher", labelled="csv:s.csv", unlabelled=["photos"], student=None,
    ...                   method=None, views=None, out="runs/x", seed=None)
    >>> flag_overrides(flags, from_file=True)
    ['teacher=teacher', 'labelled.dataset=csv:s.csv', 'pool.sources=[{path: "photos"}]', 'out_dir=runs/x']
"""

from __future__ import annotations

import json

# The built-in recipe: a small override of DistillRunConfig's defaults, as a config file would be.
QUICK_RECIPE = [
    "labelled.crop=224",
    "labelled.batch_size=32",
    "matching.distort=0.0",
    "matching.cutmix=0.0",
    "stages=["
    "{stage: soft, data: views, views: 50000, epochs: 10, lr: 2.0e-3}, "
    "{stage: joint, data: labelled, epochs: 2, lr: 1.0e-3}, "
    "{stage: task, data: labelled, epochs: 2, lr: 3.0e-4}]",
]


def flag_overrides(args, from_file: bool) -> list[str]:
    """``--set``-style overrides for the flags that were given (the recipe's first without ``--config``)."""
    out = [] if from_file else list(QUICK_RECIPE)
    if not from_file and not args.unlabelled:
        raise ValueError("kdiqa distill without --config needs --unlabelled DIR (images the teacher labels)")
    if not from_file and not args.labelled:
        raise ValueError("kdiqa distill without --config needs --labelled (a dataset name or csv:FILE)")
    simple = {"teacher": args.teacher, "labelled.dataset": args.labelled, "student": args.student}
    simple |= {"method": args.method, "seed": args.seed}
    out += [f"{key}={value}" for key, value in simple.items() if value is not None]
    if args.unlabelled:
        out.append("pool.sources=[" + ", ".join("{path: " + json.dumps(p) + "}" for p in args.unlabelled) + "]")
    if args.views is not None:
        if from_file:
            raise ValueError("--views sets the quick-start recipe's length; with --config, set stages in the file")
        out[out.index(QUICK_RECIPE[-1])] = QUICK_RECIPE[-1].replace("views: 50000", f"views: {args.views}")
    if args.out:
        out.append(f"out_dir={args.out}")
    return out
