"""Calibration and evaluation data: ``.npz`` files and folders of images, checked against a model.

An ``.npz`` holds an array ``x`` (batch first) and optionally ``y`` (integer labels). For a model
with several inputs it holds one array per input, named after the input (or ``x0``, ``x1``, ... in
input order). A folder holds one sub-folder per class (sorted names give the label numbers), as
Keras' ``image_dataset_from_directory`` reads it.
"""

from __future__ import annotations

import logging
import lzma
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekit._optional import require
from edgekit.errors import DataError
from edgekit.manifest import TensorSpec
from edgekit.vocab import PixelRange

_log = logging.getLogger(__name__)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# What numpy and zipfile raise on a damaged .npz: a bad .npy header (ValueError), a declared shape
# of booleans (TypeError), beyond int64 (OverflowError) or beyond memory (MemoryError), a damaged
# zip or compressed stream (BadZipFile, EOFError, zlib.error, lzma.LZMAError; OSError from bz2),
# an encrypted member (RuntimeError) or an unknown compression method (NotImplementedError).
_UNREADABLE = (
    ValueError,
    TypeError,
    OverflowError,
    MemoryError,
    RuntimeError,
    OSError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
)


def load_npy(path: Path, *, role: str = "input") -> np.ndarray:
    """One ``.npy`` array, without unpickling; a damaged or crafted file is a DataError."""
    try:
        return np.asarray(np.load(path, allow_pickle=False))
    except _UNREADABLE as exc:
        raise DataError(f"{role} data {path}: cannot read it: {exc}") from exc


@dataclass(frozen=True)
class LabelledData:
    """Model inputs ``xs`` (one batch-first array per model input) with optional labels ``y``."""

    xs: tuple[np.ndarray, ...]
    y: np.ndarray | None
    source: str

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray | None = None, *, source: str = "") -> LabelledData:
        """Data for a single-input model."""
        return cls(xs=(x,), y=y, source=source)

    @property
    def x(self) -> np.ndarray:
        """The first (for most models the only) input."""
        return self.xs[0]

    def __len__(self) -> int:
        return int(self.xs[0].shape[0]) if self.xs[0].ndim else 0

    def sample_indices(self, count: int, *, seed: int = 0) -> np.ndarray:
        """Sorted indices of a reproducible random subset of at most ``count`` samples."""
        if count >= len(self):
            return np.arange(len(self))
        return np.sort(np.random.default_rng(seed).permutation(len(self))[:count])

    def subset(self, indices: np.ndarray) -> LabelledData:
        """The samples at ``indices``."""
        y = None if self.y is None else self.y[indices]
        return LabelledData(xs=tuple(x[indices] for x in self.xs), y=y, source=self.source)

    def take(self, count: int, *, seed: int = 0) -> LabelledData:
        """A reproducible random subset of at most ``count`` samples."""
        return self if count >= len(self) else self.subset(self.sample_indices(count, seed=seed))

    def without_labels(self) -> LabelledData:
        """The same inputs with the labels dropped."""
        return LabelledData(xs=self.xs, y=None, source=self.source)


def load_data(
    path: Path,
    *,
    role: str,
    specs: tuple[TensorSpec, ...],
    pixel_range: PixelRange = PixelRange.UNIT,
) -> LabelledData:
    """Load ``path`` (an .npz or an image folder) as data for a model with inputs ``specs``.

    ``role`` ("calibration", "eval") names the data in error messages.
    """
    if path.is_dir():
        if len(specs) != 1:
            raise DataError(f"{role} data {path}: image folders feed single-input models only")
        data = load_image_folder(path, role=role, spec=specs[0], pixel_range=pixel_range)
    elif path.is_file():
        data = load_npz(path, role=role, specs=specs)
    else:
        raise DataError(f"{role} data not found: {path}")
    for i, spec in enumerate(specs):
        check_fits(data, spec, role=role, index=i)
    return data


def load_npz(path: Path, *, role: str, specs: tuple[TensorSpec, ...]) -> LabelledData:
    """Read the inputs and optional ``y`` from an ``.npz`` without unpickling anything."""
    if not zipfile.is_zipfile(path):
        raise DataError(f"{role} data {path}: not an .npz file (expected a zip of .npy arrays)")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # an .npy ending in zip-like bytes
            raise DataError(f"{role} data {path}: not an .npz file (expected a zip of .npy arrays)")
        with loaded as npz:
            names = list(npz.files)
            keys = [_array_key(names, spec, i, len(specs), role=role, path=path)
                    for i, spec in enumerate(specs)]  # fmt: skip
            xs = tuple(_array(npz, key, role=role, path=path) for key in keys)
            y = _array(npz, "y", role=role, path=path) if "y" in names else None
    except DataError:
        raise
    except _UNREADABLE as exc:
        raise DataError(f"{role} data {path}: cannot read it: {exc}") from exc
    counts = {len(x) if x.ndim else 0 for x in xs}
    if len(counts) != 1:
        raise DataError(f"{role} data {path}: the input arrays hold different numbers of samples")
    count = counts.pop()
    return LabelledData(xs=xs, y=_check_labels(y, count, role=role, path=path), source=str(path))


def _array_key(
    names: list[str], spec: TensorSpec, index: int, inputs: int, *, role: str, path: Path
) -> str:
    """Which array of the .npz feeds input ``index``: 'x' (one input), its name, or 'x<i>'."""
    candidates = ["x", spec.name] if inputs == 1 else [spec.name, f"x{index}"]
    for key in candidates:
        if key in names:
            return key
    found = ", ".join(names) or "no arrays"
    wanted = " or ".join(repr(c) for c in candidates)
    raise DataError(f"{role} data {path}: no array named {wanted} (found: {found})")


def _array(npz: np.lib.npyio.NpzFile, key: str, *, role: str, path: Path) -> np.ndarray:
    value = npz[key]
    if not isinstance(value, np.ndarray):  # numpy returns a member that is not an .npy as bytes
        raise DataError(f"{role} data {path}: {key!r} is not a .npy array")
    return value


def _check_labels(y: np.ndarray | None, count: int, *, role: str, path: Path) -> np.ndarray | None:
    if y is None:
        return None
    if y.ndim == 2 and y.shape[1] > 1:
        raise DataError(
            f"{role} data {path}: 'y' looks one-hot {y.shape}; give integer class labels "
            "(y.argmax(axis=1))"
        )
    y = y.reshape(-1) if y.ndim == 2 else y
    if y.ndim != 1 or len(y) != count:
        raise DataError(f"{role} data {path}: 'y' has shape {y.shape}, expected ({count},)")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{role} data {path}: 'y' must hold integer labels, not {y.dtype}")
    if count and y.min() < 0:
        raise DataError(f"{role} data {path}: 'y' holds negative labels")
    if count and y.max() > np.iinfo(np.int64).max:  # uint64 labels astype() would wrap negative
        raise DataError(f"{role} data {path}: 'y' holds labels beyond int64")
    return y.astype(np.int64)


def load_image_folder(
    path: Path, *, role: str, spec: TensorSpec, pixel_range: PixelRange
) -> LabelledData:
    """Read a folder with one sub-folder of images per class, resized to the model's input."""
    _image_geometry(spec, role=role)  # fail early on a model that takes no images
    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{role} data {path}: no class sub-folders (expected one folder per class)")
    xs: list[np.ndarray] = []
    ys: list[int] = []
    changes = _Changes()
    for label, name in enumerate(classes):
        for file in sorted((path / name).iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            xs.append(_read_image(file, spec=spec, pixel_range=pixel_range, role=role,
                                  changes=changes))  # fmt: skip
            ys.append(label)
    if not xs:
        raise DataError(f"{role} data {path}: the class folders hold no images")
    if note := changes.describe(len(xs), spec):
        # One line for the whole folder, never one per image (the CLI prints it as a note).
        _log.info("%s data %s: %s", role, path, note)
    return LabelledData.of(np.stack(xs), np.asarray(ys, dtype=np.int64), source=str(path))


@dataclass
class _Changes:
    """What loading did to a folder's images: how many it resized, and from which modes it
    converted how many."""

    resized: int = 0
    converted: dict[str, int] = field(default_factory=dict)

    def describe(self, total: int, spec: TensorSpec) -> str:
        height, width, channels = _image_geometry(spec, role="")
        parts = []
        if self.resized:
            parts.append(f"{self.resized} of {total} images resized to {width}x{height}")
        target = "grayscale" if channels == 1 else "RGB"
        for mode, count in sorted(self.converted.items()):
            parts.append(f"{count} of {total} converted from {mode} to {target}")
        return ", ".join(parts)


def load_image(
    file: Path, *, spec: TensorSpec, pixel_range: PixelRange, role: str = "input"
) -> np.ndarray:
    """One image resized to the model input's height and width, scaled per ``pixel_range``."""
    return _read_image(file, spec=spec, pixel_range=pixel_range, role=role, changes=None)


def _read_image(
    file: Path, *, spec: TensorSpec, pixel_range: PixelRange, role: str, changes: _Changes | None
) -> np.ndarray:
    image = require("PIL.Image", extra="device", package="pillow")
    height, width, channels = _image_geometry(spec, role=role)
    mode = "L" if channels == 1 else "RGB"
    try:
        with image.open(file) as img:
            if changes is not None:
                if img.mode != mode:
                    changes.converted[img.mode] = changes.converted.get(img.mode, 0) + 1
                if img.size != (width, height):
                    changes.resized += 1
            img = img.convert(mode).resize((width, height))
            pixels = np.asarray(img, dtype=np.float32).reshape(height, width, channels)
    # Pillow raises SyntaxError for a broken PNG chunk, DecompressionBombError for a huge image.
    except (OSError, ValueError, SyntaxError, image.DecompressionBombError) as exc:
        raise DataError(f"{role} data: cannot read image {file}: {exc}") from exc
    if pixel_range is PixelRange.UNIT:
        return pixels / 255.0
    if pixel_range is PixelRange.SYMMETRIC:
        return pixels / 127.5 - 1.0
    return pixels


def _image_geometry(spec: TensorSpec, *, role: str) -> tuple[int, int, int]:
    dims = spec.shape[1:]
    if len(dims) != 3 or dims[2] not in (1, 3) or dims[0] is None or dims[1] is None:
        raise DataError(
            f"{role} data is an image folder, but model input {spec.name!r} has shape "
            f"{_shape_text(spec.shape)}; image folders need a (batch, height, width, 1 or 3) input"
        )
    return int(dims[0]), int(dims[1]), int(dims[2])


def check_fits(data: LabelledData, spec: TensorSpec, *, role: str, index: int = 0) -> None:
    """Raise DataError unless input ``index`` of ``data`` can feed the model input ``spec``."""
    x = data.xs[index]
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"{role} data {data.source} is empty (0 samples)")
    sample = tuple(int(d) for d in x.shape[1:])
    if not spec.fits(sample):
        hint = ""
        if spec.fits((*sample, 1)):
            hint = "; add a trailing channel axis (x[..., None])"
        raise DataError(
            f"{role} data {data.source}: samples have shape {sample}, but model input "
            f"{spec.name!r} expects {_shape_text(spec.shape[1:])}{hint}"
        )
    if spec.dtype in ("float32", "float16"):
        if not np.issubdtype(x.dtype, np.floating):
            raise DataError(
                f"{role} data {data.source}: x has dtype {x.dtype}, but model input {spec.name!r} "
                f"takes {spec.dtype}; convert and scale it as in training (e.g. x / 255.0)"
            )
        if not np.isfinite(x).all():
            raise DataError(f"{role} data {data.source}: x holds NaN or infinite values")
    elif not np.issubdtype(x.dtype, np.integer):
        raise DataError(
            f"{role} data {data.source}: x has dtype {x.dtype}, but model input {spec.name!r} "
            f"takes {spec.dtype}"
        )


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"
