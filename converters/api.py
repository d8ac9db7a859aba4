"""``edgekit.build``: one call for a model file (Keras, SavedModel, ONNX, ``.pt2``) or an
``nn.Module``, as ``edgekit build`` on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.converters.pipeline import BuildRequest
from edgekit.converters.pipeline import build as run_build
from edgekit.converters.report import BuildReport
from edgekit.profiles import DeviceProfile, load_profile
from edgekit.progress import Progress


def build(
    model: str | Path | Any,
    *,
    profile: str | Path | DeviceProfile,
    out_dir: str | Path | None = None,
    calibration: Any = None,
    eval: Any = None,
    example_inputs: Any = None,
    progress: Progress | None = None,
    **options: Any,
) -> BuildReport:
    """Build a bundle of ``model`` for ``profile``; the bundle is written to ``out_dir``
    (default: ``bundles/<model>-<profile>``) when every budget holds.

    ``model`` is a path, or a ``torch.nn.Module`` (then ``example_inputs`` are what it is called
    on, and data may be arrays). Other keyword options are :class:`BuildRequest`'s (``prune``,
    ``sparsity``, ``train_data``, ``allow_over_budget``, ``sign_key``, ...).
    """
    device = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
    if not isinstance(model, str | Path):
        from edgekit.converters.torch_api import build_module

        name = options.pop("name", "model")
        out = Path(out_dir) if out_dir is not None else Path("bundles") / f"{name}-{device.name}"
        return build_module(model, example_inputs=example_inputs, profile=device, out_dir=out,
                            calibration=calibration, eval=eval, name=name, progress=progress,
                            **options)  # fmt: skip
    path = Path(model)
    stem = path.stem if path.is_file() else path.name
    request = BuildRequest(
        model=path,
        profile=device,
        out_dir=Path(out_dir) if out_dir is not None else Path("bundles") / f"{stem}-{device.name}",
        calibration=None if calibration is None else Path(calibration),
        eval_data=None if eval is None else Path(eval),
        **options,
    )
    return run_build(request, progress=progress)
