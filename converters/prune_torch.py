"""Pruning torch programs: magnitude (one-shot, or fine-tuned on --train data with the polynomial
schedule the Keras path uses) and structured channel removal
(:mod:`~edgekit.converters.torch_channels`).

The program's graph module is pruned in place of a copy, then captured again with
``torch.export`` at the same example inputs, so the pruned model is a program like the user's.
Zeros survive into int8: PT2E and AI Edge Quantizer quantize weights symmetrically (zero point
0), and folding a batch norm scales each output channel, so a zero weight stays zero.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from edgekit.converters.prune import PruneOutcome, PruneSpec
from edgekit.converters.prune_magnitude import LayerSparsity, magnitude_mask, polynomial_sparsity
from edgekit.converters.torch_errors import reason
from edgekit.converters.torch_pt2e import torch_module
from edgekit.datasets import LabelledData
from edgekit.errors import ConversionError, DataError
from edgekit.progress import Progress
from edgekit.vocab import PruneKind

_WEIGHTED = ("aten.conv2d", "aten.conv1d", "aten.linear", "aten.conv_transpose2d")


def weight_targets(graph_module: Any) -> list[tuple[str, str]]:
    """(node name, parameter path) of the weight of every conv/linear node."""
    found = []
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and str(node.target).startswith(_WEIGHTED):
            weight = node.args[1] if len(node.args) > 1 else None
            if weight is not None and getattr(weight, "op", None) == "get_attr":
                found.append((node.name, str(weight.target)))
    return list(dict.fromkeys(found))


def prune_program(
    program: Any,
    example: tuple[Any, ...],
    spec: PruneSpec,
    *,
    train: LabelledData | None,
    epochs: int,
    progress: Progress,
) -> tuple[Any, PruneOutcome]:
    """A pruned copy of ``program`` (fine-tuned on ``train`` when given) and what was done."""
    # Without guards: fine-tuning feeds batches the program was not captured with.
    module = copy.deepcopy(program.module(check_guards=False))
    labelled = _labelled(train)
    schedule = "one-shot"
    layers: tuple[LayerSparsity, ...] = ()
    channels: tuple[Any, ...] = ()
    label = f"Fine-tuning at {spec.sparsity:.0%} {spec.kind.value} sparsity"
    if spec.kind is PruneKind.MAGNITUDE:
        targets = _require_weights(module)
        masks = _Masks(module, targets)
        if labelled is None:
            masks.update(spec.sparsity)
        else:
            steps = int(np.ceil(len(labelled[0]) / 64)) * epochs
            end = max(1, int(steps * 2 / 3))
            with progress.task(label, total=epochs) as task:
                fine_tune(module, *labelled, epochs=epochs, example=example,
                          before_step=lambda step: masks.update(
                              polynomial_sparsity(step, end, spec.sparsity)) if step % 20 == 0
                          else None,
                          after_step=masks.apply, on_epoch=task.advance)  # fmt: skip
            masks.update(spec.sparsity)
            schedule = f"polynomial decay over {epochs} epoch(s) of fine-tuning"
        layers = tuple(masks.measure(spec.sparsity))
    else:
        from edgekit.converters.torch_channels import remove_channels

        channels = tuple(remove_channels(module, spec.sparsity))
        if labelled is not None:
            with progress.task(label, total=epochs) as task:
                fine_tune(module, *labelled, epochs=epochs, example=example, lr=3e-4,
                          on_epoch=task.advance)  # fmt: skip
            schedule = f"fine-tuned {epochs} epoch(s)"
    outcome = PruneOutcome(spec=spec, schedule=schedule, layers=layers, channels=channels)
    return recapture(module, example), outcome


def recapture(module: Any, example: tuple[Any, ...]) -> Any:
    """``module`` captured again as a program at ``example``."""
    torch = torch_module()
    try:
        return torch.export.export(module, example)
    except Exception as exc:
        raise ConversionError(f"cannot capture the pruned model: {reason(exc)}") from exc


class _Masks:
    """The weights being pruned and their current masks."""

    def __init__(self, module: Any, targets: list[tuple[str, str]]) -> None:
        self.module = module
        self.targets = targets
        self.masks: dict[str, Any] = {}

    def _weight(self, path: str) -> Any:
        return self.module.get_parameter(path)

    def update(self, sparsity: float) -> None:
        torch = torch_module()
        for _, path in self.targets:
            w = self._weight(path).detach().numpy()
            self.masks[path] = torch.from_numpy(magnitude_mask(w, sparsity))
        self.apply()

    def apply(self) -> None:
        torch = torch_module()
        with torch.no_grad():
            for path, mask in self.masks.items():
                self._weight(path).mul_(mask)

    def measure(self, target: float) -> list[LayerSparsity]:
        rows = []
        for node, path in self.targets:
            w = self._weight(path).detach().numpy()
            rows.append(LayerSparsity(node, path, int(w.size), target, float(np.mean(w == 0))))
        return rows


def fine_tune(
    module: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    example: tuple[Any, ...],
    lr: float = 3e-4,
    before_step: Callable[[int], None] | None = None,
    after_step: Callable[[], None] | None = None,
    on_epoch: Callable[[], None] | None = None,
) -> None:
    """Adam on cross-entropy over (x, y), in batches of the captured batch size when the graph
    fixed it (batch-1 programs bake their batch into reshapes), else of 64."""
    torch = torch_module()
    batch = _batch_size(module, example, len(x))
    torch.manual_seed(0)
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr)
    xs, ys = torch.from_numpy(np.asarray(x, np.float32)), torch.from_numpy(np.asarray(y, np.int64))
    step = 0
    for _ in range(epochs):
        order = torch.randperm(len(xs))
        for start in range(0, len(xs) - batch + 1, batch):
            idx = order[start : start + batch]
            if before_step is not None:
                before_step(step)
            loss = torch.nn.functional.cross_entropy(module(xs[idx]), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step()
            step += 1
        if on_epoch is not None:
            on_epoch()


def _batch_size(module: Any, example: tuple[Any, ...], count: int) -> int:
    torch = torch_module()
    wanted = min(64, count)
    probe = example[0].expand(wanted, *example[0].shape[1:]).contiguous()
    try:
        with torch.no_grad():
            module(probe)
        return wanted
    except Exception:  # guards or baked-in shapes: train at the captured batch
        return int(example[0].shape[0])


def _labelled(train: LabelledData | None) -> tuple[np.ndarray, np.ndarray] | None:
    if train is None:
        return None
    if train.y is None:
        raise DataError(f"--train data {train.source} has no labels y; fine-tuning needs them")
    return np.asarray(train.x, np.float32), np.asarray(train.y)


def _require_weights(module: Any) -> list[tuple[str, str]]:
    targets = weight_targets(module)
    if not targets:
        raise ConversionError(
            "the model has no prunable layers (Conv1d/2d, ConvTranspose2d, Linear)"
        )
    return targets
