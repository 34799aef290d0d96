"""Structural channel pruning of an IQA model with ``torch-pruning`` (Fang et al., "DepGraph: Towards Any
Structural Pruning", CVPR 2023), whose dependency graph keeps depthwise convolutions, squeeze-excitation
blocks and the head consistent.

The pruned model's config records the shapes that changed (``ModelConfig.pruned_shapes``), so a saved
checkpoint loads anywhere without the pruning library (:mod:`kdiqa.models.shapes`). The quality head is
kept whole (its input follows the pruned embedding). ``pip install kdiqa[prune]`` installs the library.

Example (needs torch-pruning):
    >>> import kdiqa
    >>> small = prune(kdiqa.create_model("iqa_test_tiny"), ratio=0.5, size=32)  # doctest: +SKIP
    >>> small.num_params() < kdiqa.create_model("iqa_test_tiny").num_params()  # doctest: +SKIP
    True
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch

from .iqa import IQAModel
from .shapes import changed_shapes


def prune(model: IQAModel, ratio: float, size: int = 224) -> IQAModel:
    """A copy of ``model`` with ``ratio`` of the channels of every prunable layer removed, by L2 magnitude.

    Args:
        model: a model with a single-level head (``head_levels`` empty).
        ratio: the share of channels removed per layer, in (0, 1).
        size: the side of the example input the dependency graph is traced with.
    """
    try:
        import torch_pruning as tp
    except ImportError as exc:
        raise ImportError("pruning needs torch-pruning: pip install 'kdiqa[prune]'") from exc
    if not 0 < ratio < 1:
        raise ValueError(f"pruning ratio must be in (0, 1), got {ratio}")
    if model.head_levels or model.cfg.pruned_shapes:
        raise ValueError("prune a model with a single-level head that has not been pruned before")
    pruned = copy.deepcopy(model).cpu().eval()
    pruner = tp.pruner.MetaPruner(
        pruned,
        torch.rand(1, 3, size, size),
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=ratio,
        ignored_layers=[pruned.head],
    )
    pruner.step()
    shapes = changed_shapes(pruned, IQAModel(model.cfg))
    pruned.cfg = replace(model.cfg, pruned_shapes=shapes)
    pruned.embed_dim = pruned.head.fc1.in_features
    rebuilt = IQAModel(pruned.cfg)  # the same architecture from the config alone: proves it loads
    rebuilt.load_state_dict(pruned.state_dict())
    return rebuilt.eval()
