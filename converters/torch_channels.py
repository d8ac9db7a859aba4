"""Structured pruning of a torch graph module: whole output channels removed, tensors sliced.

As for Keras (:mod:`~edgekit.converters.prune_structured`): a conv (groups 1) or linear whose
output reaches the next weighted nodes only through channel-wise nodes (batch norm, activations,
pooling, depthwise convs, flatten) loses its least important output channels (L1 norm of the
filter times the next batch norm's |gamma| / sqrt(var + eps)); the matching input channels of
everything downstream go with them. A node whose output meets another (add, mul, cat) or leaves
the model is left whole, and the figures say why. The graph's nodes are unchanged but for the
``groups`` of depthwise convs; the parameters and buffers they read are replaced by slices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.converters.prune_structured import ChannelPruning
from edgekit.converters.torch_pt2e import torch_module
from edgekit.errors import ConversionError

_CHANNELWISE = (
    "aten.relu", "aten.relu_", "aten.hardswish", "aten.hardsigmoid", "aten.gelu", "aten.silu",
    "aten.sigmoid", "aten.tanh", "aten.dropout", "aten.max_pool2d", "aten.avg_pool2d",
    "aten.adaptive_avg_pool2d", "aten.clamp", "aten.hardtanh", "aten.leaky_relu",
)  # fmt: skip
_BATCH_NORM = ("aten.batch_norm", "aten._native_batch_norm_legit_no_training")


def _target(node: Any) -> str:
    return str(node.target) if node.op == "call_function" else node.op


def _is_conv(node: Any) -> bool:
    return _target(node).startswith("aten.conv2d")


def _groups(node: Any) -> int:
    return int(node.args[6]) if len(node.args) > 6 else 1


def _is_depthwise(node: Any, module: Any) -> bool:
    if not _is_conv(node) or _groups(node) == 1:
        return False
    return int(module.get_parameter(node.args[1].target).shape[1]) == 1


def _producers(module: Any) -> list[Any]:
    nodes = module.graph.nodes
    return [n for n in nodes if (_is_conv(n) and _groups(n) == 1) or _target(n).startswith(
        "aten.linear")]  # fmt: skip


def _downstream(node: Any, module: Any) -> list[tuple[Any, int]] | str:
    """Nodes whose channel axis shrinks with ``node``'s (with the spatial size a flatten
    multiplies channels by), or why its channels cannot be removed."""
    found: list[tuple[Any, int]] = []
    stack = [(node, 1)]
    while stack:
        current, spatial = stack.pop()
        users = list(current.users)
        if not users:
            return "nothing consumes its output"
        for user in users:
            target = _target(user)
            if user.op == "output":
                return "its output is a model output"
            if user.args[0] is not current:
                return f"it reaches {target} as a weight"
            if (_is_conv(user) and _groups(user) == 1) or target.startswith("aten.linear"):
                found.append((user, spatial))
            elif _is_depthwise(user, module) or target.startswith(_BATCH_NORM):
                found.append((user, spatial))
                stack.append((user, spatial))
            elif target.startswith(_CHANNELWISE):
                stack.append((user, spatial))
            elif target.startswith("aten.flatten") and tuple(user.args[1:2]) == (1,):
                shape = current.meta["val"].shape
                stack.append((user, spatial * int(np.prod([int(d) for d in shape[2:]]))))
            else:
                return f"its output reaches {target} ({user.name})"
    return found


def _tensor(module: Any, arg: Any) -> Any:
    return module.get_parameter(arg.target) if arg.target in dict(module.named_parameters()) \
        else module.get_buffer(arg.target)  # fmt: skip


def _replace(module: Any, arg: Any, value: Any) -> None:
    torch = torch_module()
    owner_path, _, attr = str(arg.target).rpartition(".")
    owner = module.get_submodule(owner_path) if owner_path else module
    old = getattr(owner, attr)
    new = torch.nn.Parameter(value.contiguous(), requires_grad=old.requires_grad) \
        if isinstance(old, torch.nn.Parameter) else value.contiguous()  # fmt: skip
    setattr(owner, attr, new)


def _importance(node: Any, module: Any, reach: list[tuple[Any, int]]) -> np.ndarray:
    weight = module.get_parameter(node.args[1].target).detach().numpy()
    score = np.abs(weight).reshape(weight.shape[0], -1).sum(axis=1)
    for follower, _ in reach:
        if _target(follower).startswith(_BATCH_NORM) and follower.args[1] is not None:
            gamma = _tensor(module, follower.args[1]).detach().numpy()
            var = _tensor(module, follower.args[4]).detach().numpy()
            eps = float(follower.args[7]) if len(follower.args) > 7 else 1e-5
            return score * np.abs(gamma) / np.sqrt(var + eps)
    return score


def _keep(score: np.ndarray, fraction: float) -> np.ndarray:
    """Channels to keep, sorted; wide layers keep a multiple of 8 (SIMD kernels' width)."""
    total = len(score)
    wanted = max(1, round(total * (1 - fraction)))
    if total >= 16:
        wanted = max(8, round(wanted / 8) * 8)
    return np.sort(np.argsort(-score, kind="stable")[: min(wanted, total)])


def remove_channels(module: Any, fraction: float) -> list[ChannelPruning]:
    """Remove ``fraction`` of the output channels of every prunable conv/linear of ``module``
    (a graph module, changed in place); per-producer figures."""
    torch = torch_module()
    figures = []
    for node in _producers(module):
        weight = module.get_parameter(node.args[1].target)
        channels = int(weight.shape[0])
        reach = _downstream(node, module)
        if isinstance(reach, str):
            figures.append(ChannelPruning(node.name, channels, channels, skipped=reach))
            continue
        keep = _keep(_importance(node, module, reach), fraction)
        index = torch.from_numpy(keep)
        _replace(module, node.args[1], weight.detach()[index])
        if len(node.args) > 2 and node.args[2] is not None:
            _replace(module, node.args[2], _tensor(module, node.args[2]).detach()[index])
        for follower, spatial in reach:
            _shrink_follower(module, follower, keep, channels, spatial)
        figures.append(ChannelPruning(node.name, channels, len(keep),
                                      kept=tuple(int(c) for c in keep)))  # fmt: skip
    if not any(f.channels_after < f.channels_before for f in figures):
        reasons = "; ".join(f"{f.layer}: {f.skipped}" for f in figures) or "no Conv2d/Linear"
        raise ConversionError(f"no layer can be pruned structurally ({reasons})")
    module.recompile()
    return figures


def _shrink_follower(module: Any, node: Any, keep: np.ndarray, channels: int, spatial: int) -> None:
    torch = torch_module()
    index = torch.from_numpy(keep)
    target = _target(node)
    if target.startswith(_BATCH_NORM):
        for arg in node.args[1:5]:
            if arg is not None:
                _replace(module, arg, _tensor(module, arg).detach()[index])
    elif _is_depthwise(node, module):
        _replace(module, node.args[1], module.get_parameter(node.args[1].target).detach()[index])
        if len(node.args) > 2 and node.args[2] is not None:
            _replace(module, node.args[2], _tensor(module, node.args[2]).detach()[index])
        node.args = (*node.args[:6], len(keep), *node.args[7:])
    else:  # a conv or linear reading the channels: slice its input axis
        rows = keep if spatial == 1 else (keep[:, None] * spatial + np.arange(spatial)).ravel()
        weight = module.get_parameter(node.args[1].target).detach()
        _replace(module, node.args[1], weight[:, torch.from_numpy(rows)])
