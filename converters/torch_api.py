"""``edgekit.build`` for an ``nn.Module``: capture it with ``torch.export``, then the same build.

The module is captured at the example's shapes, saved as a ``.pt2`` (what the bundle records as
its source) and built like a ``.pt2`` given on the command line. Arrays for calibration, eval and
training data are written as ``.npz`` files; paths are passed on as they are.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.converters.pipeline import BuildRequest, build
from edgekit.converters.report import BuildReport
from edgekit.converters.torch_errors import reason
from edgekit.converters.torch_pt2e import torch_module
from edgekit.errors import ConversionError, DataError
from edgekit.profiles import DeviceProfile, load_profile
from edgekit.progress import Progress
from edgekit.vocab import PruneKind

# Data as a path (.npz or image folder), an array of inputs, or (inputs, labels).
Data = Path | str | np.ndarray | tuple[np.ndarray, np.ndarray]


def build_module(
    module: Any,
    *,
    example_inputs: Any,
    profile: str | Path | DeviceProfile,
    out_dir: Path | str,
    calibration: Data | None = None,
    eval: Data | None = None,
    train: Data | None = None,
    name: str = "model",
    prune: PruneKind | None = None,
    sparsity: float | None = None,
    epochs: int = 2,
    allow_over_budget: bool = False,
    accuracy_fallback: bool | None = None,
    sign_key: Path | None = None,
    latency_runs: int = 50,
    progress: Progress | None = None,
) -> BuildReport:
    """Build a bundle for ``profile`` from a PyTorch ``module`` called on ``example_inputs``."""
    torch = torch_module()
    if not isinstance(module, torch.nn.Module):
        raise ConversionError(f"expected a torch.nn.Module, got {type(module).__name__}")
    example = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    chosen = profile if isinstance(profile, DeviceProfile) else load_profile(str(profile))
    with tempfile.TemporaryDirectory(prefix="edgekit-module-") as tmp:
        folder = Path(tmp)
        pt2 = folder / f"{name}.pt2"
        torch.export.save(capture(module, example), str(pt2))
        request = BuildRequest(
            model=pt2,
            profile=chosen,
            out_dir=Path(out_dir),
            calibration=_as_file(calibration, folder / "calibration.npz"),
            eval_data=_as_file(eval, folder / "eval.npz"),
            train_data=_as_file(train, folder / "train.npz"),
            prune=prune,
            sparsity=sparsity,
            epochs=epochs,
            allow_over_budget=allow_over_budget,
            accuracy_fallback=accuracy_fallback,
            sign_key=sign_key,
            latency_runs=latency_runs,
        )
        return build(request, progress=progress)


def capture(module: Any, example: tuple[Any, ...]) -> Any:
    """``torch.export.export`` of ``module`` in eval mode; the exporter's reason and the line
    of ``forward`` that stopped it in one line when it cannot."""
    torch = torch_module()
    was_training = module.training
    module.eval()
    try:
        return torch.export.export(module, example)
    except Exception as exc:  # torch.export raises UserError, Unsupported, guard errors, ...
        raise ConversionError(f"torch.export cannot capture the module: {reason(exc)}") from exc
    finally:
        module.train(was_training)


def _as_file(data: Data | None, path: Path) -> Path | None:
    if data is None or isinstance(data, Path):
        return data
    if isinstance(data, str):
        return Path(data)
    if isinstance(data, np.ndarray):
        np.savez(path, x=data)
        return path
    if isinstance(data, tuple) and len(data) == 2:
        np.savez(path, x=np.asarray(data[0]), y=np.asarray(data[1]))
        return path
    raise DataError(f"data must be a path, an array or (inputs, labels), got {type(data).__name__}")
