"""``none`` (the MOS-only control) and ``response`` (soft-label distillation)."""

from __future__ import annotations

import torch

from .base import Distiller
from .registry import DISTILLERS


@DISTILLERS.register("none")
class NoDistill(Distiller):
    """The control: the same student trained on MOS only (every stage is the task stage)."""

    def stage_losses(self, batch: dict, stage: str, step: int) -> tuple[torch.Tensor, dict]:
        pred = self.student(batch["image"])
        return pred, self.score_losses(pred, batch, None, "task")


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
