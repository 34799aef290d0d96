"""The Distiller: a student, a frozen teacher, adapters, and named losses (mdistiller style).

``forward_train(batch, stage)`` returns the student's scores and a dict of named, weighted losses.
The teacher is frozen: no gradients, always in eval mode (``train()`` never changes it).
Learnable parameters are the student's plus the adapters'. Methods register by name in
:mod:`kdiqa.distill.registry` and are listed in :mod:`kdiqa.distill.methods`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..losses import LOSSES, margin_loss
from ..models.iqa import IQAModel
from .losses import fidelity_loss
from .registry import DISTILLERS

MOS_PREFIX = "mos_"  # keys of the labelled half of a joint batch of views ("mos_image", "mos_score", …)


@dataclass
class DistillConfig:
    """Loss weights and method options; each method reads what it needs."""

    alpha: float = 0.5  # joint stage: α·L(student, MOS) + (1 − α)·L(student, teacher)
    score_loss: str = "l1"  # l1 | mse
    rank_weight: float = 0.5  # fidelity loss with pair targets from the teacher (soft) or MOS (task)
    hint_weight: float = 1.0
    hint_pairs: list[list[int]] = field(default_factory=lambda: [[3, 3]])  # [teacher stage, student stage]
    review_weight: float = 1.0
    review_warmup_steps: int = 0
    relation: str = "rkd"  # rkd | sp | none
    relation_weight: float = 1.0
    review_stages: list[int] | None = None  # stages the review fuses and supervises (None: all)
    # ABF width. The fusion runs at each level's resolution, so for a small student a wide ABF costs
    # more than the student itself (64 channels at stride 4 is ~20x MobileNetV3-small-0.5's MACs).
    review_channels: int = 32
    # "relative": divide each feature loss by the teacher map's mean square (detached). The teacher's
    # stage maps are unnormalised and their energy differs by orders of magnitude between stages
    # and backbones, so the plain MSE of FitNets/ReviewKD would swamp the score losses. "none": as
    # in the papers.
    feature_norm: str = "relative"
    # Weights of kdiqa.losses (l1, mse, plcc, rank) for the MOS of the task stage, as in `kdiqa train`'s
    # `loss` section. None: score_loss plus rank_weight × the fidelity ranking loss.
    task_loss: dict[str, float] | None = None
    # Self-supervised: labelled crops come with a synthetically degraded copy (kdiqa.data.degrade) that the
    # student must score `degrade_margin` below the crop (normalised scale). 0: off.
    degrade_weight: float = 0.0
    degrade_margin: float = 0.05
    degrade_levels: list[int] = field(default_factory=lambda: [3, 5])  # lowest and highest level drawn


class Distiller(nn.Module):
    """Base class. Subclasses add adapters in ``__init__`` and losses in ``stage_losses``.

    Stages: ``"task"`` (MOS only), ``"soft"`` (teacher labels only: unlabelled data), ``"joint"``
    (both). A batch is ``{"image": (B,3,H,W) in [0,1], "score": normalised MOS (NaN if unrated)}``;
    the teacher's labels are computed on the same crops, online. A batch that also carries
    ``"degraded"`` (the crops, synthetically degraded) adds the ``degrade`` ranking loss in any stage.
    """

    def __init__(self, student: IQAModel, teacher: IQAModel | None, cfg: DistillConfig | None = None) -> None:
        super().__init__()
        self.student, self.cfg = student, cfg or DistillConfig()
        self.teacher = teacher
        if teacher is not None:
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # frozen BN statistics, no dropout: always
        return self

    def student_device(self) -> torch.device:
        return next(self.student.parameters()).device

    def learnable_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("teacher.") and p.requires_grad]

    @torch.no_grad()
    def teacher_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.teacher.forward_intermediates(x)

    def teacher_targets(self, batch: dict, maps: bool = True) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """The teacher's scores (and stage maps) for the batch's crops.

        Taken from the batch when it carries them (``t_score``, ``t_feat{s}``: a teacher cache, see
        :mod:`kdiqa.distill.cache`; stages not cached are None), else computed online.
        """
        if "t_score" not in batch:
            if not maps:
                return self.teacher(batch["image"]).detach(), []
            return self.teacher_forward(batch["image"])
        n = len(self.teacher.feature_info) if self.teacher is not None else 0
        return batch["t_score"], [batch.get(f"t_feat{s}") for s in range(n)]

    @staticmethod
    def need(t_feats: list, stage: int) -> torch.Tensor:
        """Teacher map of ``stage``, with a clear error when a cache did not store it."""
        if stage >= len(t_feats) or t_feats[stage] is None:
            have = [i for i, f in enumerate(t_feats) if f is not None]
            raise KeyError(f"teacher stage {stage} is not in the teacher cache (cached stages: {have})")
        return t_feats[stage]

    def score_losses(self, pred: torch.Tensor, batch: dict, soft: torch.Tensor | None, stage: str) -> dict:
        """Task/soft/joint score losses (L1 or MSE + fidelity ranking)."""
        base = LOSSES[self.cfg.score_loss]
        mos = batch.get("score")
        out: dict[str, torch.Tensor] = {}
        rated = None if mos is None else ~torch.isnan(mos)
        w_task = {"task": 1.0, "soft": 0.0, "joint": self.cfg.alpha}[stage]
        if w_task and rated is not None and rated.any():
            out["task"] = w_task * base(pred[rated], mos[rated])
            if self.cfg.rank_weight and rated.sum() > 1 and stage == "task":
                out["task_rank"] = self.cfg.rank_weight * fidelity_loss(pred[rated] * 10, mos[rated] * 10)
        if stage != "task" and soft is not None:
            w_soft = 1.0 if stage == "soft" else 1.0 - self.cfg.alpha
            out["soft"] = w_soft * base(pred, soft)
            if self.cfg.rank_weight and len(pred) > 1:
                # Pair targets from the teacher: ×10 puts normalised scores on a scale where Φ is not flat.
                out["soft_rank"] = w_soft * self.cfg.rank_weight * fidelity_loss(pred * 10, soft * 10)
        return out

    def stage_losses(self, batch: dict, stage: str, step: int) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def forward_train(self, batch: dict, stage: str = "joint", step: int = 0) -> tuple[torch.Tensor, dict]:
        """Student scores and the named losses; ``losses["loss"]`` is their sum.

        A joint batch of function-matching views carries a labelled half under ``mos_`` keys
        (:class:`~kdiqa.distill.data.ViewsWithMOS`): the views give the soft losses, weighted 1 − α, the
        labelled crops the task losses, weighted α (and the degradation ranking, if any).
        """
        if stage not in ("task", "soft", "joint"):
            raise ValueError(f"stage must be task, soft or joint, got {stage!r}")
        labelled = {k[len(MOS_PREFIX) :]: v for k, v in batch.items() if k.startswith(MOS_PREFIX)}
        if labelled and stage == "joint":
            views = {k: v for k, v in batch.items() if not k.startswith(MOS_PREFIX)}
            pred, soft = self.stage_losses(views, "soft", step)
            lab_pred, task = self.stage_losses(labelled, "task", step)
            a = self.cfg.alpha
            losses = {k: (1 - a) * v for k, v in soft.items()} | {k: a * v for k, v in task.items()}
            losses |= self._degrade(lab_pred, labelled)
        else:
            pred, losses = self.stage_losses(batch, stage, step)
            losses |= self._degrade(pred, batch)
        if not losses:
            raise ValueError(f"stage {stage!r} produced no loss for this batch (no MOS and no teacher?)")
        losses["loss"] = sum(losses.values())
        return pred, losses

    def _degrade(self, pred: torch.Tensor, batch: dict) -> dict:
        """The degradation ranking loss of a batch that carries ``degraded`` copies of its crops."""
        if not self.cfg.degrade_weight or "degraded" not in batch:
            return {}
        worse = self.student(batch["degraded"])
        return {"degrade": self.cfg.degrade_weight * margin_loss(pred, worse, self.cfg.degrade_margin)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)


class FeatureDistiller(Distiller):
    """A method whose ``soft``/``joint`` stages add feature losses to the score losses; its ``task``
    stage fine-tunes on MOS alone. Subclasses implement :meth:`feature_losses`."""

    def scaled(self, loss: torch.Tensor, teacher_map: torch.Tensor) -> torch.Tensor:
        """``loss`` divided by the teacher map's energy when ``cfg.feature_norm == "relative"``."""
        if self.cfg.feature_norm == "none":
            return loss
        if self.cfg.feature_norm != "relative":
            raise ValueError(f"feature_norm must be relative or none, got {self.cfg.feature_norm!r}")
        return loss / (teacher_map.detach().pow(2).mean() + 1e-6)

    def feature_losses(self, s_feats: list, t_feats: list, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def stage_losses(self, batch: dict, stage: str, step: int) -> tuple[torch.Tensor, dict]:
        x = batch["image"]
        if stage == "task":
            pred = self.student(x)
            return pred, self.score_losses(pred, batch, None, stage)
        soft, t_feats = self.teacher_targets(batch)
        pred, s_feats = self.student.forward_intermediates(x)
        return pred, {**self.score_losses(pred, batch, soft, stage), **self.feature_losses(s_feats, t_feats, step)}


def build_distiller(method: str, student: IQAModel, teacher: IQAModel | None, cfg: DistillConfig | None = None):
    """A registered method's Distiller ("none", "response", "hints", "review").

    The methods are registered by :mod:`kdiqa.distill.methods`, which the package imports first
    (as timm's ``models/__init__`` does for its architectures).
    """
    return DISTILLERS.get(method)(student, teacher, cfg or DistillConfig())
