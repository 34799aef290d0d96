"""Rebuilding a channel-pruned network from the shapes of its weights, without the pruning library.

Structural pruning (e.g. ``torch-pruning``, :mod:`kdiqa.models.pruning`) removes channels by shrinking
the weights of convolutions, normalisations and linear layers in place. A pruned model's
``ModelConfig.pruned_shapes`` records the shapes that differ from the unpruned architecture; loading
builds the unpruned timm network and applies them here, so the checkpoint's weights fit again.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 4, 1))
    >>> apply_shapes(net, {"0.weight": [5, 3, 3, 3], "0.bias": [5], "1.weight": [5], "1.bias": [5],
    ...                    "1.running_mean": [5], "1.running_var": [5], "2.weight": [4, 5, 1, 1]})
    >>> net(torch.zeros(1, 3, 8, 8)).shape
    torch.Size([1, 4, 6, 6])
"""

from __future__ import annotations

import torch
from torch import nn


def changed_shapes(pruned: nn.Module, original: nn.Module) -> dict[str, list[int]]:
    """Names and shapes of ``pruned``'s weights and buffers that differ from ``original``'s."""
    before = {k: tuple(v.shape) for k, v in original.state_dict().items()}
    after = pruned.state_dict()
    if set(before) != set(after):
        raise ValueError("pruning changed which tensors a model has, not only their shapes")
    return {k: list(v.shape) for k, v in after.items() if tuple(v.shape) != before[k]}


def apply_shapes(module: nn.Module, shapes: dict[str, list[int]]) -> None:
    """Resizes ``module``'s tensors to ``shapes`` (to zeros: load the weights after)
    and updates the layers' channel attributes; an unknown name or layer type is an error."""
    modules = dict(module.named_modules())
    by_module: dict[str, dict[str, list[int]]] = {}
    for name, shape in shapes.items():
        owner, _, attr = name.rpartition(".")
        if owner not in modules:
            raise KeyError(f"pruned shape for {name!r}: the model has no module {owner!r}")
        by_module.setdefault(owner, {})[attr] = list(shape)
    for owner, attrs in by_module.items():
        _resize(modules[owner], attrs, owner)


def _resize(m: nn.Module, attrs: dict[str, list[int]], where: str) -> None:
    old_in = getattr(m, "in_channels", None)
    for attr, shape in attrs.items():
        t = getattr(m, attr, None)
        if not isinstance(t, torch.Tensor):
            raise KeyError(f"pruned shape for {where}.{attr}: not a tensor of that module")
        new = torch.zeros(shape, dtype=t.dtype, device=t.device)
        if isinstance(t, nn.Parameter):
            setattr(m, attr, nn.Parameter(new, requires_grad=t.requires_grad))
        else:
            m._buffers[attr] = new
    if isinstance(m, nn.Conv2d):
        out, per_group = m.weight.shape[:2]
        depthwise = m.groups > 1 and m.groups == old_in
        if m.groups > 1 and not depthwise:
            raise ValueError(f"{where}: grouped convolutions other than depthwise cannot be rebuilt from shapes")
        m.out_channels, m.groups = out, out if depthwise else 1
        m.in_channels = out if depthwise else per_group
    elif isinstance(m, nn.modules.batchnorm._NormBase):
        m.num_features = m.weight.shape[0] if m.weight is not None else m.running_mean.shape[0]
    elif isinstance(m, nn.Linear):
        m.out_features, m.in_features = m.weight.shape
    elif isinstance(m, nn.LayerNorm):
        m.normalized_shape = tuple(m.weight.shape)
    else:
        raise ValueError(f"{where}: cannot rebuild a pruned {type(m).__name__} from shapes")
