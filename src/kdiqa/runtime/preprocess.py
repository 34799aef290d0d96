"""Test-time views in numpy: the one place where an image becomes a model's input.

:class:`PreprocessConfig` says which views to take (``full``/``center``/``crops``, crop size, crop count,
resizes) and how to read the output; :func:`make_views` turns an image into those views as float32
(V, 3, H, W). Both prediction backends (torch and ONNX Runtime, :mod:`kdiqa.runtime.predictor`) and
:class:`kdiqa.data.transforms.EvalTransform` take their views from here. An exported model folder's
``preprocess.json`` is this configuration written out. Nothing here imports torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.io import as_rgb_image, resize_short
from ..data.views import check_n_crops, crop_boxes

PREPROCESS_NAME = "preprocess.json"
FORMAT = "kdiqa-onnx"
FORMAT_VERSION = 1
MODES = ("full", "center", "crops")


@dataclass
class PreprocessConfig:
    """How an exported model wants its input, and how to read its output.

    The model takes RGB images in [0, 1] as float32 NCHW (its mean/std normalisation is inside the
    graph) and returns one normalised score per image, in [0, 1] and higher = better; a path's
    score is the mean over its views, mapped to ``score_range`` (reversed if not ``higher_better``).
    """

    model: str = ""
    mode: str = "full"  # full | center | crops
    crop: int = 384
    n_crops: int = 5
    flip: bool = True
    resize: int | None = None  # shorter-side resize applied first
    max_short: int | None = None  # downscale (never upscale) so the shorter side is at most this
    score_range: tuple[float, float] = (0.0, 100.0)
    higher_better: bool = True
    input_name: str = "image"
    output_name: str = "score"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # informational: applied inside the graph
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    files: dict[str, str] = field(default_factory=lambda: {"fp32": "model.onnx"})

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"view mode must be one of {MODES}, got {self.mode!r}")
        check_n_crops(self.n_crops)
        self.score_range = tuple(self.score_range)
        self.mean, self.std = tuple(self.mean), tuple(self.std)

    @classmethod
    def for_model(
        cls, cfg, mode: str | None = None, crop: int | None = None, n_crops: int | None = None
    ) -> PreprocessConfig:
        """The default views and output scale of a model, from its ``ModelConfig`` (attribute access only).

        ``mode``, ``crop`` and ``n_crops`` override the model's defaults when given.
        """
        return cls(
            model=cfg.name,
            mode=mode or cfg.eval_mode,
            crop=crop or cfg.eval_crop,
            n_crops=n_crops or cfg.eval_n_crops,
            max_short=cfg.eval_max_short,
            score_range=tuple(cfg.score_range),
            higher_better=cfg.higher_better,
            mean=tuple(cfg.mean),
            std=tuple(cfg.std),
        )

    @property
    def n_views(self) -> int:
        """Views per image: 1 for ``full``/``center``, ``n_crops`` (twice that with ``flip``) for ``crops``."""
        return self.n_crops * (2 if self.flip else 1) if self.mode == "crops" else 1

    def to_json(self) -> dict:
        """The ``preprocess.json`` payload (with a format tag and a human-readable description)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **asdict(self),
            "input": "float32 NCHW, RGB in [0, 1]; EXIF orientation applied, alpha composited over white; "
            "mean/std normalisation is inside the model",
            "resample": "Pillow bicubic",
            "padding": "crops larger than the image pad bottom/right by reflection (edge replication when "
            "the image is smaller than half the crop)",
            "views": "center = one centre crop; crops = n_crops crops (centre, the 4 corners, then the rest of "
            "an even g x g grid, g = max(3, ceil(sqrt(n_crops)))) + their mirrors when flip; the score of an "
            "image is the mean over its views",
            "output": "normalised score in [0, 1], higher = better; MOS = lo + z * (hi - lo) with "
            "(lo, hi) = score_range, z -> 1 - z first when not higher_better",
        }

    @classmethod
    def from_json(cls, d: dict, source: str = "preprocess.json") -> PreprocessConfig:
        if d.get("format") != FORMAT:
            raise ValueError(f"{source}: not a kdiqa ONNX preprocessing file (format {d.get('format')!r})")
        if int(d.get("format_version", 0)) > FORMAT_VERSION:
            raise ValueError(f"{source}: format_version {d['format_version']} is newer than this kdiqa supports")
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        try:
            return cls(**known)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from exc

    @classmethod
    def read(cls, folder: str | Path) -> PreprocessConfig:
        """Reads ``preprocess.json`` from an exported model folder."""
        path = Path(folder) / PREPROCESS_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: no {PREPROCESS_NAME}; not a folder written by `kdiqa export`")
        try:
            payload = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: invalid JSON ({exc})") from exc
        return cls.from_json(payload, str(path))

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / PREPROCESS_NAME
        path.write_text(json.dumps(self.to_json(), indent=2))
        return path

    def to_output_scale(self, z: np.ndarray | float) -> np.ndarray | float:
        """Normalised scores → ``score_range`` (the training dataset's scale)."""
        lo, hi = self.score_range
        z = z if self.higher_better else 1 - z
        return z * (hi - lo) + lo


def pad_to(a: np.ndarray, size: int) -> np.ndarray:
    """Pads a (C, H, W) array bottom/right to at least ``size`` × ``size`` (reflection; edge when too small)."""
    h, w = a.shape[-2:]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "edge"
        a = np.pad(a, ((0, 0), (0, ph), (0, pw)), mode=mode)
    return a


def to_chw_float(img: Image.Image) -> np.ndarray:
    """RGB PIL image → float32 (3, H, W) in [0, 1] (the same arithmetic as torchvision's ``to_dtype``)."""
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)).astype(np.float32) * np.float32(
        1.0 / 255.0
    )


def make_views(image, cfg: PreprocessConfig) -> np.ndarray:
    """The test-time views of one image as float32 (V, 3, H, W); the image's score is their mean.

    Example:
        >>> from PIL import Image
        >>> cfg = PreprocessConfig("m", mode="crops", crop=32, n_crops=5)
        >>> make_views(Image.new("RGB", (48, 40)), cfg).shape
        (10, 3, 32, 32)
    """
    img = resize_short(as_rgb_image(image), cfg.resize)
    if cfg.max_short and min(img.size) > cfg.max_short:
        img = resize_short(img, cfg.max_short)
    a = to_chw_float(img)
    if cfg.mode == "full":
        return a[None]
    a = pad_to(a, cfg.crop)
    c = cfg.crop
    boxes = crop_boxes(a.shape[-2], a.shape[-1], c, 1 if cfg.mode == "center" else cfg.n_crops)
    views = [a[:, y : y + c, x : x + c] for y, x in boxes]
    if cfg.mode == "crops" and cfg.flip:
        views += [v[:, :, ::-1] for v in views]
    return np.ascontiguousarray(np.stack(views))
