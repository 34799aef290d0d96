"""``hints``: feature distillation (FitNets, Romero et al. ICLR 2015) plus soft labels."""

from __future__ import annotations

import torch
from torch import nn

from .adapters import ConvBNAdapter, probe_features
from .base import DistillConfig, FeatureDistiller
from .losses import hint_loss
from .registry import DISTILLERS


@DISTILLERS.register("hints")
class HintDistill(FeatureDistiller):
    """Stage ``soft``/``joint``: soft labels + hint losses between teacher middle layers and the
    student's layers at corresponding positions, through 1×1 conv + BN adapters; stage ``task``
    fine-tunes on MOS (adapters unused).

    ``cfg.hint_pairs`` lists ``[teacher_stage, student_stage]`` indices into ``feature_info``.
    """

    def __init__(self, student, teacher, cfg: DistillConfig) -> None:
        super().__init__(student, teacher, cfg)
        t_shapes, s_shapes = probe_features(teacher), probe_features(student)
        for ti, si in cfg.hint_pairs:
            if not (0 <= ti < len(t_shapes) and 0 <= si < len(s_shapes)):
                raise ValueError(
                    f"hint pair {[ti, si]} outside teacher stages 0..{len(t_shapes) - 1} / "
                    f"student stages 0..{len(s_shapes) - 1}"
                )
        self.adapters = nn.ModuleList(ConvBNAdapter(s_shapes[si][0], t_shapes[ti][0]) for ti, si in cfg.hint_pairs)

    def feature_losses(self, s_feats: list, t_feats: list, step: int) -> dict[str, torch.Tensor]:
        hint = sum(
            self.scaled(hint_loss(a(s_feats[si]), self.need(t_feats, ti)), t_feats[ti])
            for a, (ti, si) in zip(self.adapters, self.cfg.hint_pairs, strict=True)
        )
        return {"hint": self.cfg.hint_weight * hint / len(self.adapters)}
