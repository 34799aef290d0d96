"""Fresh views for function matching (Beyer et al., "Knowledge distillation: A good teacher is patient
and consistent", CVPR 2022).

A stage with ``data: views`` trains on a stream of views that never repeat: view ``i`` of stage ``s``
is drawn from a generator seeded by ``(seed, s, i)`` — a source image of the pool, a random resized
crop, a flip, an optional synthetic distortion (the 25 × 5 table), and, with some probability,
mixup or CutMix with a second such view. The teacher scores exactly the tensor the student sees
(online, in :meth:`~kdiqa.distill.base.Distiller.teacher_targets`), maps included for ``hints`` and
``review``. A view is a pure function of its index, so an epoch's views are the same after a resume.

Example:
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(2):
    ...     Image.new("RGB", (64, 48), (i * 120, 60, 0)).save(d / f"{i}.png")
    >>> views = MatchingViews(sorted(str(p) for p in d.iterdir()), MatchSection(crop=32), seed=0, stage=0)
    >>> views[5]["image"].shape, bool(torch.equal(views[5]["image"], views[5]["image"]))
    (torch.Size([3, 32, 32]), True)
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import RandomResizedCrop

from ..data.distortions import apply_distortion, list_distortions
from ..data.io import load_image


@dataclass
class MatchSection:
    """``matching`` section of a distillation config: how ``data: views`` draws its views."""

    crop: int = 224
    scale: tuple[float, float] = (0.25, 1.0)  # random resized crop: share of the image's area
    ratio: tuple[float, float] = (0.75, 4 / 3)  # and aspect ratio
    flip: bool = True
    distort: float = 0.5  # probability of a synthetic distortion (type and level drawn uniformly)
    mix: float = 0.8  # probability of mixing with a second view
    cutmix: float = 0.5  # share of the mixes that are CutMix (the others: mixup)
    alpha: float = 1.0  # mixing weight ~ Beta(alpha, alpha)
    seed: int | None = None  # the view stream's seed (None: the run's): runs sharing it see the same views
    cache: str | None = None  # the teacher's scores of the stream (`kdiqa match-cache`): no teacher in training
    keep_decoded_mb: float = 0  # decoded source images each loader process keeps (least recently used out): speed only


@dataclass(frozen=True)
class Part:
    """One unmixed view: which image, which crop box (left, top, width, height), flip, distortion."""

    source: int
    box: tuple[int, int, int, int]
    flip: bool
    distortion: tuple[str, int, int] | None  # (type, level, seed)


@dataclass(frozen=True)
class ViewSpec:
    """A training view: a part, optionally mixed with a second one (``mode`` ``mixup`` or ``cutmix``).

    ``lam`` is the first part's weight; CutMix pastes ``paste`` (left, top, width, height) of the second.
    """

    first: Part
    second: Part | None = None
    mode: str = "none"
    lam: float = 1.0
    paste: tuple[int, int, int, int] | None = None


class MatchingViews(Dataset):
    """View ``i`` of ``stage``: ``{"image": (3, crop, crop) in [0, 1], "score": NaN}`` (no MOS: the teacher
    labels it). ``length`` bounds the indices a sampler may ask for; every index is a new view."""

    def __init__(self, images: list[str], cfg: MatchSection, seed: int, stage: int, length: int = 2**62) -> None:
        if not images:
            raise ValueError("function matching needs at least one source image")
        self.images, self.cfg, self.seed, self.stage, self.length = images, cfg, seed, stage, length
        self.types = list_distortions()
        self._sizes: dict[int, tuple[int, int]] = {}
        self._decoded: OrderedDict[int, tuple[Image.Image, int]] = OrderedDict()  # source → (image, bytes), newest last
        self._decoded_bytes = 0
        self.t_scores: torch.Tensor | None = None  # the teacher's scores by index (a match cache), if read

    def __len__(self) -> int:
        return self.length

    def spec(self, index: int) -> ViewSpec:
        """The view's recipe, a pure function of ``(seed, stage, index)``."""
        rng = np.random.default_rng([self.seed, self.stage, index])
        first = self._part(rng)
        c = self.cfg
        if rng.random() >= c.mix:
            return ViewSpec(first)
        second, lam = self._part(rng), float(rng.beta(c.alpha, c.alpha))
        if rng.random() >= c.cutmix:
            return ViewSpec(first, second, "mixup", lam)
        side = c.crop * np.sqrt(1.0 - lam)  # a box of (1 − lam) of the area, clipped at the border
        cy, cx = rng.integers(0, c.crop, size=2)
        y0, y1 = int(np.clip(cy - side / 2, 0, c.crop)), int(np.clip(cy + side / 2, 0, c.crop))
        x0, x1 = int(np.clip(cx - side / 2, 0, c.crop)), int(np.clip(cx + side / 2, 0, c.crop))
        lam = 1.0 - (y1 - y0) * (x1 - x0) / c.crop**2  # the area actually pasted
        return ViewSpec(first, second, "cutmix", lam, (x0, y0, x1 - x0, y1 - y0))

    def _part(self, rng: np.random.Generator) -> Part:
        c = self.cfg
        source = int(rng.integers(len(self.images)))
        w, h = self._size(source)
        with torch.random.fork_rng(devices=[]):  # torchvision's crop sampler, seeded by this view
            # the CPU generator only: where CUDA is not initialised, torch.manual_seed also defers a CUDA seeding
            # and formats a stack trace for it, about 1 ms a view
            torch.random.default_generator.manual_seed(int(rng.integers(2**63)))
            top, left, ch, cw = RandomResizedCrop.get_params(torch.empty(1, h, w), list(c.scale), list(c.ratio))
        flip = bool(c.flip and rng.random() < 0.5)
        distortion = None
        if rng.random() < c.distort:
            distortion = (
                self.types[int(rng.integers(len(self.types)))],
                int(rng.integers(1, 6)),
                int(rng.integers(2**31)),
            )
        return Part(source, (left, top, cw, ch), flip, distortion)

    def _size(self, source: int) -> tuple[int, int]:
        """(width, height) as :func:`~kdiqa.data.io.load_image` returns the image (EXIF rotation applied),
        read from the header only."""
        if source not in self._sizes:
            with Image.open(self.images[source]) as im:
                w, h = im.size
                if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # orientations that swap width and height
                    w, h = h, w
            self._sizes[source] = (w, h)
        return self._sizes[source]

    def _image(self, source: int) -> Image.Image:
        """The decoded source image, from the ``keep_decoded_mb`` store when it holds it."""
        if source in self._decoded:
            self._decoded.move_to_end(source)
            return self._decoded[source][0]
        img = load_image(self.images[source])
        size, budget = img.width * img.height * len(img.getbands()), self.cfg.keep_decoded_mb * 2**20
        if size <= budget:
            while self._decoded_bytes + size > budget:
                self._decoded_bytes -= self._decoded.popitem(last=False)[1][1]
            self._decoded[source] = (img, size)
            self._decoded_bytes += size
        return img

    def _render(self, part: Part) -> torch.Tensor:
        img = self._image(part.source)
        left, top, w, h = part.box
        view = img.crop((left, top, left + w, top + h)).resize((self.cfg.crop, self.cfg.crop), Image.BICUBIC)
        if part.distortion is not None:
            kind, level, seed = part.distortion
            view = apply_distortion(view, kind, level, seed=seed)
        t = TF.to_dtype(TF.to_image(view), torch.float32, scale=True)
        return t.flip(-1) if part.flip else t

    def render(self, spec: ViewSpec) -> torch.Tensor:
        """The view's pixels: float (3, crop, crop) in [0, 1]."""
        x = self._render(spec.first)
        if spec.mode == "mixup":
            x = spec.lam * x + (1.0 - spec.lam) * self._render(spec.second)
        elif spec.mode == "cutmix":
            left, top, w, h = spec.paste
            x[:, top : top + h, left : left + w] = self._render(spec.second)[:, top : top + h, left : left + w]
        return x.clamp(0, 1).contiguous()

    def __getitem__(self, index: int) -> dict:
        item = {"image": self.render(self.spec(int(index))), "score": torch.tensor(float("nan"))}
        if self.t_scores is not None:
            item["t_score"] = self.t_scores[int(index)]
        return item
