"""The bundle's eval sample on disk: compact, and decoded the same way by the build and the board.

200 float32 images of 224x224x3 take 120 MB; the same images as the 8-bit pixels they were take a
quarter of that before compression. So a float input that is an affine map of 8-bit values (per
tensor, or per channel on axis 1 or the last axis: ``x / 255``, ``(x / 255 - mean) / std``) is
stored as uint8 with its scale and offset, exactly. Other float inputs are stored as float16, and
the build scores the artifacts on the decoded values, so the board's figure still equals the
build's. Integer inputs are kept as they are.

In the ``.npz``: ``x`` (or ``x0``, ``x1``, ... in model input order), with ``<name>.scale`` and
``<name>.offset`` when ``<name>`` is uint8-coded; ``y`` labels; ``reference`` fp32 outputs.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# A value is on the 8-bit grid when it is this close to it, in steps: float32 rounding of the
# data's own scaling is far smaller, any real 16-bit or float data far larger.
_ON_GRID = 0.01


@dataclass(frozen=True)
class Encoded:
    """One input array as stored, and what it decodes to."""

    arrays: dict[str, np.ndarray]  # name -> stored arrays (the data and its scale/offset)
    decoded: np.ndarray
    coding: str  # "uint8", "float16" or the integer dtype kept


def input_names(count: int) -> list[str]:
    """The stored names of ``count`` model inputs."""
    return ["x"] if count == 1 else [f"x{i}" for i in range(count)]


def encode(name: str, x: np.ndarray) -> Encoded:
    """``x`` (batch first) stored compactly under ``name``."""
    if not np.issubdtype(x.dtype, np.floating):
        return Encoded({name: x}, x, x.dtype.name)
    values = np.asarray(x, dtype=np.float32)
    for axis in _channel_axes(values):
        coded = _as_uint8(values, axis)
        if coded is not None:
            q, scale, offset = coded
            decoded = decode_uint8(q, scale, offset)
            return Encoded({name: q, f"{name}.scale": scale, f"{name}.offset": offset},
                           decoded, "uint8")  # fmt: skip
    half = values.astype(np.float16)
    return Encoded({name: half}, half.astype(np.float32), "float16")


def decode(npz: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """The input ``name`` of a stored sample, as the model is fed it."""
    stored = np.asarray(npz[name])
    if f"{name}.scale" in npz:
        return decode_uint8(stored, np.asarray(npz[f"{name}.scale"]),
                            np.asarray(npz[f"{name}.offset"]))  # fmt: skip
    if stored.dtype == np.float16:
        return stored.astype(np.float32)
    return stored


def read_inputs(path: str | Path, count: int = 1) -> tuple[np.ndarray, ...]:
    """The ``count`` model inputs of an eval-sample file, decoded as the model is fed them."""
    with np.load(path, allow_pickle=False) as npz:
        return tuple(decode(npz, name) for name in input_names(count))


def decode_uint8(q: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """uint8 codes back to float32: ``q * scale + offset`` (scale/offset broadcast)."""
    scale, offset = scale.astype(np.float32), offset.astype(np.float32)
    if np.broadcast_shapes(q.shape, scale.shape, offset.shape) != q.shape:
        return q.astype(np.float32) * scale + offset
    # In place, the same float32 operations: a sample of 224x224 images decodes into one array,
    # not three (the board's memory high-water mark).
    out = q.astype(np.float32)
    out *= scale
    out += offset
    return out


def file_bytes(xs: Sequence[Encoded], y: np.ndarray | None, reference: np.ndarray | None) -> bytes:
    """The ``.npz`` holding an encoded sample."""
    arrays: dict[str, Any] = {}
    for encoded in xs:
        arrays.update(encoded.arrays)
    if y is not None:
        arrays["y"] = y
    if reference is not None:
        arrays["reference"] = np.asarray(reference, dtype=np.float32)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _channel_axes(x: np.ndarray) -> list[int | None]:
    """Per tensor first, then per channel on axis 1 (NCHW) and the last axis (NHWC)."""
    axes: list[int | None] = [None]
    if x.ndim >= 3:
        axes += [1, x.ndim - 1]
    return axes


def _as_uint8(x: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(codes, scale, offset) when ``x`` is exactly an affine map of 8-bit values per channel of
    ``axis`` (per tensor when None), else None."""
    if x.size == 0 or not np.isfinite(x).all():
        return None
    moved = x[None] if axis is None else np.moveaxis(x, axis, 0)
    if axis is not None and moved.shape[0] > 64:  # not a channel axis
        return None
    scales, offsets = [], []
    for channel in moved:
        levels = np.unique(channel)
        if len(levels) > 256:
            return None
        lo = levels[0]
        # The 8-bit step: the range over the number of smallest gaps it holds (a constant
        # channel has none). Rounding in the data's own float32 arithmetic stays far below 1 %.
        step = 1.0
        if len(levels) > 1:
            span = float(levels[-1] - lo)
            step = span / round(span / float(np.min(np.diff(levels))))
        codes = np.round((levels - lo) / step)
        if codes[-1] > 255 or np.any(np.abs(codes * step + lo - levels) > _ON_GRID * step):
            return None
        scales.append(step)
        offsets.append(lo)
    shape = [1] * x.ndim
    if axis is not None:
        shape[axis] = len(scales)
    scale = np.asarray(scales, dtype=np.float32).reshape(shape)
    offset = np.asarray(offsets, dtype=np.float32).reshape(shape)
    q = np.round((x - offset) / scale).astype(np.uint8)
    return q, scale, offset
