"""``none`` (the MOS-only control) and ``response`` (soft-label distillation)."""

from __future__ import annotations

import torch

from ..losses import combined_loss
from .base import Distiller
from .registry import DISTILLERS


@DISTILLERS.register("none")
class NoDistill(Distiller):
    """The control: the same student trained on MOS only (every stage is the task stage).

    With ``cfg.task_loss`` (weights of :data:`kdiqa.losses.LOSSES`) this is supervised IQA training,
    which is how ``kdiqa train`` runs: method ``none``, one stage, no teacher.
    """

    def stage_losses(self, batch: dict, stage: str, step: int) -> tuple[torch.Tensor, dict]:
        pred = self.student(batch["image"])
        if self.cfg.task_loss is None:
            return pred, self.score_losses(pred, batch, None, "task")
        losses = combined_loss(pred, batch["score"], self.cfg.task_loss)
        return pred, {k: v for k, v in losses.items() if k != "loss"}


@DISTILLERS.register("response")
class ResponseDistill(Distiller):
    """Soft-label distillation: the student learns the teacher's scores on the same crops.

    Stage ``soft``: teacher labels only (unlabelled pool). Stage ``joint``:
    α·L(student, MOS) + (1 − α)·L(student, teacher), each with a fidelity ranking term whose pair
    targets come from MOS or from the teacher.
    """

    def stage_losses(self, batch: dict, stage: str, step: int) -> tuple[torch.Tensor, dict]:
        x = batch["image"]
        soft = self.teacher_targets(batch, maps=False)[0] if stage != "task" else None
        pred = self.student(x)
        return pred, self.score_losses(pred, batch, soft, stage)
