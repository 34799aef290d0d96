"""The IQA model: a timm backbone plus a quality head.

Features come from timm's ``forward_intermediates`` (one map per stage, described by the
backbone's ``feature_info``), so distillation can use any stage without hooks. The head pools the
backbone's pre-logits embedding (``forward_head(..., pre_logits=True)``, so every timm family keeps
its own ImageNet-trained neck such as EfficientNet's ``conv_head``) and regresses one score.
Optionally (``head_levels``) the head also sees the mean and standard deviation of earlier stage
maps, so low-level statistics (noise, blur, compression) reach the score directly, as in the
multi-level spatially pooled features of Hosu et al. (MLSP, CVPR 2019) and HyperIQA's multi-scale
content features (Su et al., CVPR 2020).

Scores are on a normalised scale, [0, 1] and higher = better, inside the model; ``score_range``
(from the training dataset) maps them back to a human scale for users.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import timm
import torch
from torch import nn
from torch.nn import functional as F

from .shapes import apply_shapes


@dataclass
class ModelConfig:
    """Everything needed to rebuild an :class:`IQAModel` (stored in a checkpoint's config.json)."""

    name: str  # registered kdiqa model name
    arch: str  # timm architecture
    head_hidden: int = 256
    head_dropout: float = 0.1
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    score_range: tuple[float, float] = (0.0, 100.0)  # scale that ``score`` reports on
    higher_better: bool = True
    eval_mode: str = "full"  # default test-time transform: full | center | crops
    eval_crop: int = 384
    eval_n_crops: int = 5
    eval_max_short: int | None = None  # downscale larger images to this shorter side before scoring
    head_levels: tuple[int, ...] = ()  # stage indices whose maps are mean+std pooled into the head
    num_stages: int | None = None  # keep only the backbone's first N feature stages (None: all)
    input_pool: int = 1  # the backbone sees the image average-pooled by this factor (1: full resolution)
    pruned_shapes: dict = field(default_factory=dict)  # tensor name → shape, where channel pruning changed it
    backbone_kwargs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for key in ("mean", "std", "score_range", "head_levels"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


class QualityHead(nn.Module):
    """Embedding → hidden → GELU → dropout → one score."""

    def __init__(self, in_features: int, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, 1)
        nn.init.constant_(self.fc2.bias, 0.5)  # the middle of the normalised scale

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(emb)))).squeeze(-1)


def mean_std_pool(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(B, C, H, W) → (B, 2C): per-channel spatial mean, then standard deviation.

    The ``eps`` inside the square root keeps the gradient finite on constant maps.

    Example:
        >>> mean_std_pool(torch.ones(1, 2, 4, 4)).tolist()
        [[1.0, 1.0, 0.0010000000474974513, 0.0010000000474974513]]
    """
    mean = x.mean((2, 3), keepdim=True)
    std = ((x - mean).square().mean((2, 3)) + eps).sqrt()
    return torch.cat([mean.flatten(1), std], 1)


def stage_indices(num_stages: int, indices: int | Sequence[int] | None = None) -> list[int]:
    """Absolute stage indices with timm's ``forward_intermediates`` meaning of ``indices``: ``None``
    all stages, an int the last n, a list those stages (negative ones count from the end).

    Example:
        >>> stage_indices(5), stage_indices(5, 2), stage_indices(5, [0, -1])
        ([0, 1, 2, 3, 4], [3, 4], [0, 4])
    """
    if indices is None:
        return list(range(num_stages))
    if isinstance(indices, int):
        if not 0 < indices <= num_stages:
            raise ValueError(f"last-n stages ({indices}) out of range: 1 to {num_stages}")
        return list(range(num_stages - indices, num_stages))
    out = [num_stages + i if i < 0 else i for i in indices]
    if any(not 0 <= i < num_stages for i in out):
        raise ValueError(f"stage indices {list(indices)} out of range for {num_stages} stages")
    return out


class IQAModel(nn.Module):
    """A timm backbone plus a quality head.

    Args:
        cfg: the model's configuration.
        backbone: an existing timm model (built from ``cfg.arch`` when omitted).

    Example:
        >>> import kdiqa, torch
        >>> m = kdiqa.create_model("iqa_test_tiny").eval()
        >>> m(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2])
        >>> [f["num_chs"] for f in m.feature_info]
        [16, 24, 32, 48, 64]
    """

    def __init__(self, cfg: ModelConfig, backbone: nn.Module | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone or timm.create_model(cfg.arch, pretrained=False, num_classes=0, **cfg.backbone_kwargs)
        self.num_stages = len(self.backbone.feature_info)
        if cfg.num_stages is not None:
            self._truncate(cfg.num_stages)
        # Derive the embedding width from a dummy forward rather than trusting attribute names.
        was_training = self.backbone.training
        self.backbone.eval()
        with torch.no_grad():
            emb = self.backbone.forward_head(self.backbone.forward_features(torch.zeros(1, 3, 64, 64)), pre_logits=True)
        self.backbone.train(was_training)
        n_stages = self.num_stages
        levels = [i % n_stages for i in cfg.head_levels]
        if any(not -n_stages <= i < n_stages for i in cfg.head_levels) or len(set(levels)) != len(levels):
            raise ValueError(f"head_levels {list(cfg.head_levels)}: need distinct stage indices in [0, {n_stages})")
        self.head_levels = sorted(levels)
        self.embed_dim = int(emb.shape[-1]) + sum(2 * self.backbone.feature_info[i]["num_chs"] for i in levels)
        # Stage statistics and the embedding live on very different scales: normalise the concatenation.
        self.head_norm = nn.LayerNorm(self.embed_dim) if levels else nn.Identity()
        self.head = QualityHead(self.embed_dim, cfg.head_hidden, cfg.head_dropout)
        # (x - mean) / std as a per-channel 1x1 convolution: the same numbers (to float rounding), but
        # exported as one Conv that ONNX Runtime fuses into its blocked layout, where Sub + Div are two
        # extra passes over the full-resolution input (~10 % of the small student's time at 500 px).
        std = torch.tensor(cfg.std, dtype=torch.float32)
        mean = torch.tensor(cfg.mean, dtype=torch.float32)
        self.register_buffer("_norm_weight", (1.0 / std).view(3, 1, 1, 1), persistent=False)
        self.register_buffer("_norm_bias", -mean / std, persistent=False)
        if isinstance(cfg.input_pool, bool) or not isinstance(cfg.input_pool, int) or cfg.input_pool < 1:
            raise ValueError(f"input_pool must be a positive integer, got {cfg.input_pool}")
        if cfg.pruned_shapes:
            self._apply_pruned_shapes(cfg.pruned_shapes)

    def _apply_pruned_shapes(self, shapes: dict) -> None:
        """Shrinks the layers to a pruned model's shapes (:mod:`kdiqa.models.shapes`); weights are loaded after."""
        if self.head_levels:
            raise ValueError("pruned models have a single-level head (head_levels must be empty)")
        apply_shapes(self, shapes)
        self.embed_dim = self.head.fc1.in_features
        with torch.no_grad():  # the stage maps' widths changed too
            _, feats = self.backbone.forward_intermediates(
                torch.zeros(1, 3, 64, 64), indices=list(range(self.num_stages))
            )
        for info, f in zip(self.backbone.feature_info, feats, strict=False):
            info["num_chs"] = int(f.shape[1])

    def _truncate(self, n: int) -> None:
        """Drops every block after feature stage ``n`` and the backbone's neck (timm's
        ``prune_intermediate_layers``); the pre-logits embedding becomes the average-pooled stage-``n`` map.
        """
        if not 1 <= n <= self.num_stages:
            raise ValueError(f"num_stages {n}: {self.cfg.arch} has feature stages 1..{self.num_stages}")
        if n < self.num_stages:
            # prune_norm too: timm releases before 1.0.30 keep EfficientNet's neck (conv_head, bn2) unless asked,
            # and the neck expects the last stage's width, not stage n's
            self.backbone.prune_intermediate_layers(indices=[n - 1], prune_head=True, prune_norm=True)
            if hasattr(self.backbone, "act2"):  # and MobileNetV3's activation after the pooled neck, before 1.0.30
                self.backbone.act2 = nn.Identity()
            self.backbone.reset_classifier(0, "avg")  # pruning leaves no pooling; the head needs a vector
        self.num_stages = n

    @property
    def feature_info(self) -> list[dict]:
        """One dict per stage map: ``num_chs``, ``reduction`` (stride) and ``module``."""
        return [dict(f) for f in self.backbone.feature_info[: self.num_stages]]

    @property
    def name(self) -> str:
        return self.cfg.name

    def normalize_input(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB tensors → the backbone's input: average-pooled by ``input_pool`` (an anti-aliased
        downscale; a trailing partial window is dropped), then normalised."""
        if self.cfg.input_pool > 1:
            x = F.avg_pool2d(x, self.cfg.input_pool)
        return F.conv2d(x, self._norm_weight, self._norm_bias, groups=3)

    def forward_intermediates(
        self, x: torch.Tensor, indices: int | list[int] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Scores plus the stage feature maps (all stages, or those in ``indices``).

        ``x`` is a batch of RGB images in [0, 1].
        """
        # timm's own meaning of ``indices``, over this model's stages (a truncated backbone still lists all of
        # its original stages in its ``feature_info``, so the indices are always passed to it explicitly).
        wanted = stage_indices(self.num_stages, indices)
        if not self.head_levels:
            final, feats = self.backbone.forward_intermediates(self.normalize_input(x), indices=wanted)
            return self.head(self.backbone.forward_head(final, pre_logits=True)), feats
        every = list(range(self.num_stages))
        final, feats = self.backbone.forward_intermediates(self.normalize_input(x), indices=every)
        score = self.head(self._head_input(final, [feats[i] for i in self.head_levels]))
        return score, [feats[i] for i in wanted]

    def _head_input(self, final: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        emb = self.backbone.forward_head(final, pre_logits=True)
        if not self.head_levels:
            return emb
        return self.head_norm(torch.cat([emb] + [mean_std_pool(f) for f in feats], 1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The head's input (B, ``embed_dim``) for RGB images in [0, 1]."""
        x = self.normalize_input(x)
        if not self.head_levels:
            return self._head_input(self.backbone.forward_features(x), [])
        final, feats = self.backbone.forward_intermediates(x, indices=self.head_levels)
        return self._head_input(final, feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised quality scores (B,) for RGB images in [0, 1] of shape (B, 3, H, W)."""
        return self.head(self.embed(x))

    def to_output_scale(self, z: torch.Tensor | float) -> torch.Tensor | float:
        """Normalised scores → the training dataset's scale (``cfg.score_range``)."""
        lo, hi = self.cfg.score_range
        z = z if self.cfg.higher_better else 1 - z
        return z * (hi - lo) + lo

    def score(self, image, mode: str | None = None) -> float:
        """Scores one image (path, PIL image, HWC uint8 numpy array, or CHW [0,1] tensor).

        Returns the score on the model's output scale (e.g. MOS 0–100 for a CLIVE-trained model),
        through the predictor's torch backend (the model's own views, or ``mode``'s).
        """
        from ..predict import TorchBackend
        from ..runtime.preprocess import PreprocessConfig

        was_training = self.training
        try:
            return TorchBackend(self, PreprocessConfig.for_model(self.cfg, mode)).score(image)
        finally:
            self.train(was_training)

    def quality_map(
        self, image, patch: int | None = None, stride: int | None = None, mode: str | None = None, max_batch: int = 32
    ):
        """Patch-wise scores of one image on a grid, on the output scale: a :class:`~kdiqa.runtime.qmap.QualityMap`.

        Patches of ``patch`` pixels every ``stride`` pixels of the image as prepared for scoring (defaults:
        the model's crop, at most half the shorter side; half the patch), ``max_batch`` per forward.

        Example:
            >>> import kdiqa, numpy as np
            >>> model = kdiqa.create_model("iqa_test_tiny")
            >>> m = model.quality_map(np.zeros((48, 80, 3), np.uint8), patch=32, stride=16)
            >>> m.shape, m.xs.tolist()
            ((2, 4), [0, 16, 32, 48])
        """
        from ..predict import TorchBackend
        from ..runtime.preprocess import PreprocessConfig

        was_training = self.training
        try:
            backend = TorchBackend(self, PreprocessConfig.for_model(self.cfg, mode))
            return backend.quality_map(image, patch, stride, max_batch)
        finally:
            self.train(was_training)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
