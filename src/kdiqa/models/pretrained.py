"""Bundled pretrained weights: ``<architecture>.<tag>`` names, aliases, and where their files live.

Torch-free on purpose: the ONNX Runtime scorer (:mod:`kdiqa.runtime`) resolves ``default`` through
this module without importing torch. The model registry (:mod:`kdiqa.models.zoo`) reads the same
table, so a tag exists in exactly one place.

Example:
    >>> resolve_name("default")
    'iqa_effnet_lite0_s4.clive_third_native'
    >>> split_name("iqa_effnet_lite2.clive")
    ('iqa_effnet_lite2', 'clive')
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
CONFIG_NAME = "config.json"
ONNX_SUBDIR = "onnx"  # a bundled model's exported ONNX Runtime folder (fp32 + int8 + preprocess.json)

# architecture → {tag: what the weights are}; the files live in WEIGHTS_DIR / "<architecture>.<tag>"
PRETRAINED_TAGS: dict[str, dict[str, str]] = {
    "iqa_effnet_lite2": {"clive": "reference teacher, trained on CLIVE"},
    "iqa_effnet_lite0_s4": {
        "clive": "ImageNet Lite0 cut after its stride-16 stage, trained on CLIVE MOS",
        "clive_rank": "earlier default: the same, fine-tuned with degradation ranking (sees noise, blur, compression)",
        "clive_third": "an earlier edge tier's start: the cut Lite0 at 1/3 resolution, function matching, then MOS",
        "clive_third_rank": "earlier edge tier: clive_third fine-tuned, backbone frozen, with degradation ranking",
        "clive_third_native": "edge tier: the cut Lite0 at 1/3 resolution, function matching on 96k views at the "
        "photos' own scale, then CLIVE MOS with degradation ranking, backbone frozen",
    },
    "iqa_effnet_lite0": {
        "clive_half": "an earlier mid tier's start: ImageNet Lite0 at 1/2 resolution, function matching, then MOS",
        "clive_half_rank": "earlier mid tier: clive_half fine-tuned, backbone frozen, with degradation ranking",
        "clive_half_native": "mid tier: ImageNet Lite0 at 1/2 resolution, function matching on 96k views at the "
        "photos' own scale, then CLIVE MOS with degradation ranking, backbone frozen",
        "clive_p70": "earlier mid tier: ImageNet Lite0 with 70% of its channels pruned, distilled",
    },
    "iqa_mobilenetv3_small_050": {
        "clive": "MobileNetV3-small 0.5, trained on CLIVE MOS after a self-supervised start",
        "clive_fm": "earlier edge tier: MobileNetV3-small 0.5 taught by function matching, then CLIVE MOS",
    },
}
# The default: the edge tier if it met its targets (accuracy, speed, +0.05 test SRCC from distillation over the
# better of its MOS-only controls) and rates every README example above its distorted copy, else the mid tier on
# the same terms, else the most accurate bundled model at >= 20 images/s in torch that rates the examples so
# (docs/models.md gives the rule and the figures behind it).
ALIASES = {
    "default": "iqa_effnet_lite0_s4.clive_third_native",
    "teacher": "iqa_effnet_lite2.clive",
    "edge": "iqa_effnet_lite0_s4.clive_third_native",
    "mid": "iqa_effnet_lite0.clive_half_native",
}


def split_name(name: str) -> tuple[str, str | None]:
    """``"arch.tag"`` → ``("arch", "tag")``; a name without a tag → ``(name, None)``."""
    arch, _, tag = str(name).partition(".")
    return arch, tag or None


def resolve_name(name: str) -> str:
    """An alias (``default``, ``teacher``) → its ``arch.tag`` name; any other name unchanged."""
    return ALIASES.get(str(name), str(name))


def is_pretrained(name: str) -> bool:
    """Whether ``name`` (or the alias) is a bundled ``arch.tag``."""
    arch, tag = split_name(resolve_name(name))
    return tag is not None and tag in PRETRAINED_TAGS.get(arch, {})


def pretrained_names() -> list[str]:
    """Every registered ``arch.tag``, whether or not its files are installed."""
    return sorted(f"{arch}.{tag}" for arch, tags in PRETRAINED_TAGS.items() for tag in tags)


def weights_folder(name: str) -> Path:
    """The checkpoint folder of a bundled name or alias (``KeyError`` for any other name)."""
    key = resolve_name(name)
    if not is_pretrained(key):
        raise KeyError(f"{name!r} is not a bundled model; bundled: {', '.join(pretrained_names())}")
    return WEIGHTS_DIR / key


def installed() -> list[str]:
    """Bundled names whose weights are present in this installation."""
    return [n for n in pretrained_names() if (WEIGHTS_DIR / n / CONFIG_NAME).is_file()]
