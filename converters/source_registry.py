"""Which :class:`~edgekit.converters.source.Source` class opens a model path: one line per kind.

The kinds are asked in order; the first whose ``accepts`` says yes opens the path. ``register``
adds a kind in front of the shipped ones (a test-only source, a plug-in).
"""

from __future__ import annotations

from pathlib import Path

from edgekit.converters.keras_source import KerasSource
from edgekit.converters.onnx_source import OnnxSource
from edgekit.converters.saved_model_source import SavedModelSource
from edgekit.converters.source import Source, SourceType
from edgekit.converters.torch_source import TorchSource
from edgekit.errors import ConversionError

_SOURCE_TYPES: list[SourceType] = [
    KerasSource,
    OnnxSource,
    SavedModelSource,
    TorchSource,
]


def register(source_type: SourceType) -> None:
    """Let ``source_type`` open the paths it accepts, before the shipped kinds are asked."""
    if source_type not in _SOURCE_TYPES:
        _SOURCE_TYPES.insert(0, source_type)


def unregister(source_type: SourceType) -> None:
    """Undo :func:`register`."""
    if source_type in _SOURCE_TYPES:
        _SOURCE_TYPES.remove(source_type)


def source_types() -> tuple[SourceType, ...]:
    """The registered kinds, in the order they are asked."""
    return tuple(_SOURCE_TYPES)


def open_source(path: Path, *, work_dir: Path) -> Source:
    """Open the model at ``path`` with the first kind that accepts it (scratch in ``work_dir``)."""
    if not path.exists():
        raise ConversionError(f"model not found: {path}")
    for source_type in _SOURCE_TYPES:
        if source_type.accepts(path):
            return source_type.open(path, work_dir=work_dir)
    *others, last = [t.expected for t in _SOURCE_TYPES]
    expected = f"{', '.join(others)} or {last}" if others else last
    raise ConversionError(f"unsupported model file {path}: expected {expected}")
