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
QUICK_RECIPE = ["labelled.crop=224", "labelled.batch_size=32", "matching.distort=0.0", "matching.cutmix=0.0"]
QUICK_VIEWS = 50000


def quick_stages(views: int = QUICK_VIEWS) -> str:
    """The recipe's stages: function matching on ``views`` views, then MOS with the teacher, then MOS alone."""
    return (
        f"stages=[{{stage: soft, data: views, views: {views}, epochs: 10, lr: 2.0e-3}}, "
        "{stage: joint, data: labelled, epochs: 2, lr: 1.0e-3}, {stage: task, data: labelled, epochs: 2, lr: 3.0e-4}]"
    )


def flag_overrides(args, from_file: bool) -> list[str]:
    """``--set``-style overrides for the flags that were given (the recipe's first without ``--config``)."""
    if args.views is not None and from_file:
        raise ValueError("--views sets the quick-start recipe's length; with --config, set stages in the file")
    out = [] if from_file else [*QUICK_RECIPE, quick_stages(QUICK_VIEWS if args.views is None else args.views)]
    if not from_file and not args.unlabelled:
        raise ValueError("kdiqa distill without --config needs --unlabelled DIR (images the teacher labels)")
    if not from_file and not args.labelled:
        raise ValueError("kdiqa distill without --config needs --labelled (a dataset name or csv:FILE)")
    simple = {"teacher": args.teacher, "labelled.dataset": args.labelled, "student": args.student}
    simple |= {"method": args.method, "seed": args.seed}
    out += [f"{key}={value}" for key, value in simple.items() if value is not None]
    if args.unlabelled:
        out.append("pool.sources=[" + ", ".join("{path: " + json.dumps(p) + "}" for p in args.unlabelled) + "]")
    if args.out:
        out.append(f"out_dir={args.out}")
    return out
