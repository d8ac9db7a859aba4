"""Structured pruning of Keras 3 models: remove whole filters/units and rebuild a smaller model.

Magnitude pruning leaves the MAC count of dense CPU kernels unchanged; removing channels does not.
For every Conv2D/Dense whose output reaches the next weighted layers only through channel-wise
layers (batch norm, activations, pooling, dropout, depthwise convs, flatten), the least important
output channels (L1 norm of the filter, times the following batch norm's scale) are removed, and
the matching input channels of everything downstream go with them. Layers whose outputs meet
others (Add, Concatenate) or leave the model are left whole and the report says why.
"""

from __future__ import annotations

import copy
import itertools
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.converters._tf import keras
from edgekit.errors import ConversionError

_PRODUCERS = {"Conv2D", "Dense"}
_PASS_THROUGH = {
    "BatchNormalization",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Softmax",
    "Dropout",
    "SpatialDropout2D",
    "GaussianNoise",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "ZeroPadding2D",
    "Cropping2D",
    "UpSampling2D",
    "DepthwiseConv2D",
    "Flatten",
}
_CONSUMERS = {"Conv2D", "Dense", "SeparableConv2D", "Conv2DTranspose"}


@dataclass(frozen=True)
class ChannelPruning:
    """What structured pruning did to one producer layer."""

    layer: str
    channels_before: int
    channels_after: int
    skipped: str = ""  # why the layer was left whole
    kept: tuple[int, ...] = ()  # indices of the output channels kept


@dataclass(frozen=True)
class _Plan:
    keep_out: dict[str, np.ndarray]  # producer -> output channels kept
    keep_in: dict[str, np.ndarray]  # consumer / pass-through -> input channels (or rows) kept


def prune_channels(model: Any, fraction: float) -> tuple[Any, list[ChannelPruning]]:
    """A new, physically smaller model with ``fraction`` of the channels of each prunable layer
    removed, and per-layer figures. The input model is not changed."""
    k = keras()
    if not isinstance(model, k.Model) or type(model).__name__ not in ("Sequential", "Functional"):
        raise ConversionError("structured pruning needs a Sequential or Functional Keras model")
    config = model.get_config()
    graph = _Graph.of(model, config)
    plan, figures = _plan(model, graph, fraction)
    if not plan.keep_out:
        reasons = "; ".join(f"{f.layer}: {f.skipped}" for f in figures) or "no Conv2D/Dense layers"
        raise ConversionError(f"no layer can be pruned structurally ({reasons})")
    new_config = _shrunk_config(config, plan)
    rebuilt = type(model).from_config(new_config)
    for layer in graph.layers.values():
        if layer.weights:
            rebuilt.get_layer(layer.name).set_weights(_sliced_weights(layer, plan))
    return rebuilt, figures


class _Graph:
    """Which layer feeds which, read from the model's config."""

    def __init__(self, layers: dict[str, Any], consumers: dict[str, list[str]], outputs: set[str]):
        self.layers = layers
        self.consumers = consumers
        self.outputs = outputs

    @classmethod
    def of(cls, model: Any, config: dict[str, Any]) -> _Graph:
        layers = {layer.name: layer for layer in model.layers}
        for layer in model.layers:
            if hasattr(layer, "layers"):
                raise ConversionError(
                    f"structured pruning cannot see inside nested model {layer.name!r}"
                )
        consumers: dict[str, list[str]] = defaultdict(list)
        if type(model).__name__ == "Sequential":
            names = [layer.name for layer in model.layers]
            for a, b in itertools.pairwise(names):
                consumers[a].append(b)
            return cls(layers, consumers, {names[-1]})
        for entry in config["layers"]:
            for source in _history(entry.get("inbound_nodes", [])):
                consumers[source].append(entry["name"])
        heads = config["output_layers"]
        heads = [heads] if heads and isinstance(heads[0], str) else heads  # one output: flat
        outputs = {head[0] for head in heads}
        return cls(layers, consumers, outputs)


def _history(node: Any) -> list[str]:
    """Layer names referenced by keras_history entries anywhere inside an inbound node."""
    found: list[str] = []
    if isinstance(node, dict):
        if "keras_history" in node.get("config", {}):
            found.append(node["config"]["keras_history"][0])
        for value in node.values():
            found.extend(_history(value))
    elif isinstance(node, (list, tuple)):  # live configs hold tuples where JSON has lists
        for value in node:
            found.extend(_history(value))
    return found


def _plan(model: Any, graph: _Graph, fraction: float) -> tuple[_Plan, list[ChannelPruning]]:
    keep_out: dict[str, np.ndarray] = {}
    keep_in: dict[str, np.ndarray] = {}
    figures = []
    for name, layer in graph.layers.items():
        kind = type(layer).__name__
        if kind not in _PRODUCERS or (kind == "Conv2D" and layer.groups != 1):
            continue
        channels = int(layer.kernel.shape[-1])
        reach = _downstream(name, graph)
        if isinstance(reach, str):
            figures.append(ChannelPruning(name, channels, channels, skipped=reach))
            continue
        keep = _keep(_importance(layer, reach, graph), fraction)
        keep_out[name] = keep
        for follower, spatial in reach:
            keep_in[follower] = _expand(keep, channels, spatial)
        figures.append(ChannelPruning(name, channels, len(keep), kept=tuple(int(c) for c in keep)))
    return _Plan(keep_out, keep_in), figures


def _downstream(name: str, graph: _Graph) -> list[tuple[str, int]] | str:
    """Layers whose inputs lose channels when ``name`` does, with the spatial size a Flatten
    multiplies channels by (1 if none); or the reason the channels cannot be removed."""
    found: list[tuple[str, int]] = []
    stack = [(name, 1)]
    while stack:
        current, spatial = stack.pop()
        if current in graph.outputs:
            return "its output is a model output"
        followers = graph.consumers.get(current, [])
        if not followers:
            return "nothing consumes its output"
        for follower in followers:
            layer = graph.layers[follower]
            kind = type(layer).__name__
            if kind == "DepthwiseConv2D" and layer.depth_multiplier != 1:
                return f"{follower} has depth_multiplier {layer.depth_multiplier}"
            if kind == "SeparableConv2D" and layer.depth_multiplier != 1:
                return f"{follower} has depth_multiplier {layer.depth_multiplier}"
            if kind in _CONSUMERS and not (kind == "Conv2D" and layer.groups != 1):
                found.append((follower, spatial))
            elif kind in _PASS_THROUGH:
                if kind == "Flatten":
                    shape = layer.input.shape
                    spatial *= int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
                elif kind in ("BatchNormalization", "DepthwiseConv2D"):
                    found.append((follower, spatial))
                stack.append((follower, spatial))
            else:
                return f"its output reaches {kind} layer {follower}"
    return found


def _importance(layer: Any, reach: list[tuple[str, int]], graph: _Graph) -> np.ndarray:
    """L1 norm of each output filter, scaled by the next batch norm's gamma / sqrt(var + eps)."""
    kernel = keras().ops.convert_to_numpy(layer.kernel)
    score = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
    for follower, _ in reach:
        bn = graph.layers[follower]
        if type(bn).__name__ == "BatchNormalization" and bn.scale:
            gamma = keras().ops.convert_to_numpy(bn.gamma)
            var = keras().ops.convert_to_numpy(bn.moving_variance)
            score = score * np.abs(gamma) / np.sqrt(var + bn.epsilon)
            break
    return score


def _keep(score: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the channels to keep, sorted. Wide layers keep a multiple of 8 channels,
    which SIMD int8 kernels process without remainder loops."""
    total = len(score)
    wanted = max(1, round(total * (1 - fraction)))
    if total >= 16:
        wanted = max(8, round(wanted / 8) * 8)
    wanted = min(wanted, total)
    return np.sort(np.argsort(-score, kind="stable")[:wanted])


def _expand(keep: np.ndarray, channels: int, spatial: int) -> np.ndarray:
    """Rows of a Dense kernel after a channels-last Flatten: position * channels + channel."""
    if spatial == 1:
        return keep
    return (np.arange(spatial)[:, None] * channels + keep[None, :]).ravel()


def _shrunk_config(config: dict[str, Any], plan: _Plan) -> dict[str, Any]:
    new = copy.deepcopy(config)
    for entry in new["layers"]:
        entry.pop("build_config", None)  # input shapes there are the old ones
        name = entry["config"].get("name", entry.get("name"))
        if name in plan.keep_out:
            key = "filters" if entry["class_name"] == "Conv2D" else "units"
            entry["config"][key] = len(plan.keep_out[name])
    new.pop("build_input_shape", None)
    return new


_OUT_AXIS_WEIGHTS = {"bias", "gamma", "beta", "moving_mean", "moving_variance"}


def _sliced_weights(layer: Any, plan: _Plan) -> list[np.ndarray]:
    kind = type(layer).__name__
    keep_in = plan.keep_in.get(layer.name)
    keep_out = plan.keep_out.get(layer.name)
    # Channel-wise layers (BN, depthwise) keep the same channels they receive.
    channelwise = kind in ("BatchNormalization", "DepthwiseConv2D")
    out = []
    for variable in layer.weights:
        w = keras().ops.convert_to_numpy(variable)
        short = variable.name.split("/")[-1]
        if channelwise and keep_in is not None:
            w = w[:, :, keep_in, :] if short == "kernel" else w[keep_in]
        elif short in ("kernel", "depthwise_kernel", "pointwise_kernel"):
            if keep_in is not None:
                w = _slice_input(kind, short, w, keep_in)
            if keep_out is not None and short == "kernel":
                w = w[..., keep_out]
        elif short in _OUT_AXIS_WEIGHTS and keep_out is not None:
            w = w[keep_out]
        out.append(w)
    return out


def _slice_input(kind: str, weight: str, w: np.ndarray, keep: np.ndarray) -> np.ndarray:
    if kind == "Dense":
        return w[keep, :]
    if kind == "Conv2DTranspose":  # kernel: (kh, kw, out, in)
        return w[..., keep]
    if kind == "SeparableConv2D" and weight == "pointwise_kernel":
        return w[:, :, keep, :]
    return w[:, :, keep, :]  # Conv2D kernel / SeparableConv2D depthwise kernel: (kh, kw, in, ...)
