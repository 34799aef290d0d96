"""``review``: knowledge review (ReviewKD, Chen et al. CVPR 2021) plus a relation-based loss."""

from __future__ import annotations

import torch
from torch import nn

from .adapters import ABF, probe_features
from .base import DistillConfig, FeatureDistiller
from .losses import hcl_loss, rkd_angle_loss, rkd_distance_loss, similarity_preserving_loss
from .registry import DISTILLERS


@DISTILLERS.register("review")
class ReviewDistill(FeatureDistiller):
    """Student stages are fused deepest first by ABF modules, so each fused output carries the
    deeper student features down to a shallower level, where it is compared with the teacher's map
    of that level by the hierarchical context loss: shallow teacher levels supervise the student's
    deep features. Plus soft labels and a relation loss between the samples of a batch (RKD distance
    + 2·angle on the pooled embeddings, or similarity-preserving on the deepest maps).

    The total is task/soft losses + λ·min(1, step / warm-up)·mean HCL over the levels + relation.
    """

    def __init__(self, student, teacher, cfg: DistillConfig) -> None:
        super().__init__(student, teacher, cfg)
        t_shapes, s_shapes = probe_features(teacher), probe_features(student)
        # Student stage i is reviewed against teacher stage i, so a student cut short (``num_stages``) pairs with
        # the teacher's first stages; a student with more stages than the teacher has nothing to pair with.
        if len(t_shapes) < len(s_shapes):
            raise ValueError(
                f"review needs at least as many stages in the teacher ({len(t_shapes)}) as in the student "
                f"({len(s_shapes)})"
            )
        self.stages = sorted(cfg.review_stages) if cfg.review_stages is not None else list(range(len(s_shapes)))
        if not self.stages or any(not 0 <= i < len(s_shapes) for i in self.stages):
            raise ValueError(f"review_stages {cfg.review_stages} must be a non-empty subset of 0..{len(s_shapes) - 1}")
        # abfs[k] handles stage self.stages[k]; the deepest one has nothing deeper to fuse.
        last = self.stages[-1]
        self.abfs = nn.ModuleList(
            ABF(s_shapes[i][0], cfg.review_channels, t_shapes[i][0], fuse=i != last) for i in self.stages
        )

    def review(self, s_feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Fused student maps for ``self.stages``, deepest first fused into shallower ones."""
        outs: list[torch.Tensor] = [None] * len(self.stages)  # type: ignore[list-item]
        deeper = None
        for k in reversed(range(len(self.stages))):
            outs[k], deeper = self.abfs[k](s_feats[self.stages[k]], deeper)
        return outs

    def relation(self, s_feats, t_feats) -> torch.Tensor:
        s, t = s_feats[-1], self.need(t_feats, len(t_feats) - 1)
        if self.cfg.relation == "sp":
            return similarity_preserving_loss(s, t)
        s_emb, t_emb = s.mean((2, 3)), t.mean((2, 3))
        return rkd_distance_loss(s_emb, t_emb) + 2.0 * rkd_angle_loss(s_emb, t_emb)

    def feature_losses(self, s_feats: list, t_feats: list, step: int) -> dict[str, torch.Tensor]:
        warm = 1.0 if not self.cfg.review_warmup_steps else min(1.0, step / self.cfg.review_warmup_steps)
        fused = self.review(s_feats)
        hcl = sum(
            self.scaled(hcl_loss(o, self.need(t_feats, i)), t_feats[i]) for o, i in zip(fused, self.stages, strict=True)
        )
        out = {"review": self.cfg.review_weight * warm * hcl / len(self.stages)}  # mean over levels, like hints
        if self.cfg.relation != "none" and self.cfg.relation_weight and len(s_feats[-1]) > 2:
            out["relation"] = self.cfg.relation_weight * self.relation(s_feats, t_feats)
        return out
