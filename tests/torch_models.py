"""Small PyTorch models of the four families users deploy, trained here on real data and cached.

ResNet-style CNN (batch norm, residual adds) on Fashion-MNIST; a MobileNetV3-style CNN
(depthwise, hardswish, squeeze-excite), a transformer encoder (attention, layer norm, GELU) and a
GRU classifier on scikit-learn's digits (rows of the image as tokens). Inputs are NCHW, as
PyTorch users feed them. Each trained model is saved as a ``.pt2`` (``torch.export.save``) with
calibration and eval ``.npz`` files, keyed by this file's code and the torch version.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekit.converters.examples import digits, fashion_mnist


class ResCNN(nn.Module):
    """Conv-BN-ReLU stem, one residual block, global pool, linear head."""

    def __init__(self, channels: int = 16, classes: int = 10) -> None:
        super().__init__()
        c = channels
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, stride=2, padding=1), nn.BatchNorm2d(c),
                                  nn.ReLU())  # fmt: skip
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(x + self.bn2(self.conv2(y)))
        return self.fc(self.pool(x).flatten(1))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(self.pool(x)))))


class MobileNetV3ish(nn.Module):
    """Stem, inverted residual (1x1 expand, depthwise 3x3, SE, hardswish, 1x1 project, add)."""

    def __init__(self, channels: int = 16, expand: int = 48, classes: int = 10) -> None:
        super().__init__()
        c, e = channels, expand
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                                  nn.Hardswish())  # fmt: skip
        self.expand = nn.Sequential(nn.Conv2d(c, e, 1, bias=False), nn.BatchNorm2d(e),
                                    nn.Hardswish())  # fmt: skip
        self.dw = nn.Sequential(nn.Conv2d(e, e, 3, padding=1, groups=e, bias=False),
                                nn.BatchNorm2d(e), nn.Hardswish())  # fmt: skip
        self.se = SqueezeExcite(e)
        self.project = nn.Sequential(nn.Conv2d(e, c, 1, bias=False), nn.BatchNorm2d(c))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.project(self.se(self.dw(self.expand(x))))
        return self.head(self.pool(x).flatten(1))


class TinyTransformer(nn.Module):
    """The 8 rows of a digit as 8 tokens: embedding, pre-norm attention and GELU MLP, mean pool."""

    def __init__(self, dim: int = 32, heads: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.embed = nn.Linear(8, dim)
        self.pos = nn.Parameter(torch.zeros(1, 8, dim))
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x.flatten(1, 2)) + self.pos
        h = self.ln1(t)
        t = t + self.attn(h, h, h, need_weights=False)[0]
        t = t + self.mlp(self.ln2(t))
        return self.head(t.mean(1))


class GRUClassifier(nn.Module):
    """The 8 rows of a digit as a sequence through a GRU.

    h0 is passed and both outputs are used: litert-torch 0.10's PT2E GRU annotator fails on a
    GRU called without h0 (IndexError) or with one output used (AssertionError).
    """

    def __init__(self, hidden: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.gru = nn.GRU(8, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.flatten(1, 2)
        h0 = torch.zeros(1, seq.shape[0], self.gru.hidden_size, dtype=seq.dtype)
        out, h = self.gru(seq, h0)
        return self.fc(0.5 * (out[:, -1] + h[-1]))


@dataclass(frozen=True)
class Recipe:
    """How a test model is made: its class, data set, training epochs and learning rate."""

    model: type[nn.Module]
    data: str  # "fashion-mnist" or "digits"
    epochs: int
    lr: float = 3e-3


RECIPES = {
    "rescnn": Recipe(ResCNN, "fashion-mnist", epochs=2),
    "mobilenetv3": Recipe(MobileNetV3ish, "digits", epochs=15),
    "transformer": Recipe(TinyTransformer, "digits", epochs=25),
    "gru": Recipe(GRUClassifier, "digits", epochs=25),
}
# Fashion-MNIST is cut to what a couple of CPU seconds per epoch train.
_FASHION_TRAIN = 12000
_FASHION_EVAL = 1000


@dataclass(frozen=True)
class TrainedTorchModel:
    """A trained model as a .pt2 with its data (NCHW) and its own accuracy in torch."""

    name: str
    pt2: Path
    calibration: Path
    eval: Path
    torch_accuracy: float  # top-1 in percent on the eval data

    def module(self) -> nn.Module:
        """The program's module (eval semantics), as torch.export.load gives it."""
        return torch.export.load(str(self.pt2)).module()


def nchw_data(dataset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train and eval arrays of ``dataset``, NCHW float32 in [0, 1]."""
    split = fashion_mnist() if dataset == "fashion-mnist" else digits()
    x_train = np.ascontiguousarray(split.x_train.transpose(0, 3, 1, 2))
    x_test = np.ascontiguousarray(split.x_test.transpose(0, 3, 1, 2))
    if dataset == "fashion-mnist":
        return (x_train[:_FASHION_TRAIN], split.y_train[:_FASHION_TRAIN],
                x_test[:_FASHION_EVAL], split.y_test[:_FASHION_EVAL])  # fmt: skip
    return x_train, split.y_train, x_test, split.y_test


def train(module: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float) -> None:
    """Adam on cross-entropy, batches of 64, seeded."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(module.parameters(), lr)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(xs))
        for start in range(0, len(xs), 64):
            idx = order[start : start + 64]
            loss = F.cross_entropy(module(xs[idx]), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    module.eval()


def top1(module: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy in percent, one sample at a time (a program is captured at batch 1)."""
    with torch.no_grad():
        logits = torch.cat([module(torch.from_numpy(x[i : i + 1])) for i in range(len(x))])
    return 100.0 * float((logits.argmax(1).numpy() == y).mean())


def cache_key() -> str:
    """This file's code and the torch version: a change to either retrains."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(torch.__version__.encode())
    return digest.hexdigest()[:16]


def trained(name: str, root: Path) -> TrainedTorchModel:
    """Model ``name`` trained (or read back from ``root``, the cache folder)."""
    recipe = RECIPES[name]
    folder = root / f"{name}-{cache_key()}"
    pt2, calib, evaluation = folder / "model.pt2", folder / "calib.npz", folder / "eval.npz"
    score = folder / "torch_accuracy.txt"
    if not score.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        x_train, y_train, x_test, y_test = nchw_data(recipe.data)
        torch.manual_seed(0)
        module = recipe.model()
        train(module, x_train, y_train, epochs=recipe.epochs, lr=recipe.lr)
        program = torch.export.export(module, (torch.from_numpy(x_train[:1]),))
        torch.export.save(program, str(pt2))
        np.savez(calib, x=x_train[-300:], y=y_train[-300:])
        np.savez(evaluation, x=x_test, y=y_test)
        score.write_text(f"{top1(program.module(), x_test, y_test)!r}\n")
    return TrainedTorchModel(name, pt2, calib, evaluation, float(score.read_text()))
