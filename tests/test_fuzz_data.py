"""Fuzzing data files: .npz arrays (load_npz, load_data) and images (load_image), which come
from the user or, on the board, from the daemon's watched folder.

Whatever the bytes, each returns its data or raises ``DataError`` (and never unpickles); any
other exception is a crash of the CLI or the daemon.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from fuzz_strategies import (
    FUZZ,
    SLOW,
)
from hypothesis import event, example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgekit.datasets import LabelledData, load_data, load_image, load_npz
from edgekit.errors import DataError
from edgekit.manifest import (
    TensorSpec,
)
from edgekit.vocab import PixelRange

# --- Data files -----------------------------------------------------------------------------------

ONE_INPUT = (TensorSpec(name="x", shape=(None, 4), dtype="float32"),)
TWO_INPUTS = (
    TensorSpec(name="a", shape=(None, 2), dtype="int8"),
    TensorSpec(name="b", shape=(None,), dtype="float32"),
)
UNPICKLED: list[str] = []


def _tripwire(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class Canary:
    """Records it was unpickled: loading .npz data must never run a pickle."""

    def __reduce__(self) -> tuple[Callable[[str], str], tuple[str]]:
        return _tripwire, ("unpickled",)


def _npy(array: np.ndarray, *, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def _npy_header(header: str, body: bytes, *, version: int) -> bytes:
    """An .npy file with a hand-written header dict (format version 1 or 2)."""
    text = header.encode("latin1")
    size = struct.pack("<H" if version == 1 else "<I", len(text) + 1)
    return b"\x93NUMPY" + bytes([version, 0]) + size + text + b"\n" + body


DTYPES = st.sampled_from(
    ["<f4", "<f8", "<f2", "|i1", "|u1", "<i8", "<u8", "|b1", "<c8", "<U3", "|S2", "<M8[s]"]
).map(np.dtype) | st.just(np.dtype([("a", "<f4"), ("b", "|i1")]))
ARRAYS = st.one_of(
    hnp.arrays(np.float32, st.tuples(st.integers(0, 4), st.just(4))),  # fits ONE_INPUT
    hnp.arrays(np.int64, st.tuples(st.integers(0, 4))),  # labels
    hnp.arrays(np.uint64, st.tuples(st.integers(0, 4))),
    hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)),
)
HEADER_DESCRS = ["'<f4'", "'|O'", "'<f4x'", "[('a', '<f4')]", "[('a', '|O')]", "5", "'V0'", "'<U0'"]
HEADER_SHAPES = [
    "()", "(3, 4)", "(-1,)", "(2**64,)", str((2**40,)), str((2**64,)), str((2**63 - 1,)),
    str((2**32, 2**32)), "(3, 4, 'a')", "((1,),)", "[3, 4]", "(3.0,)", "(True,)",
]  # fmt: skip
MEMBER_NAMES = st.sampled_from(
    ["x.npy", "y.npy", "x", "y", "a.npy", "b.npy", "x0.npy", "x1.npy", "z.npy", "d/x.npy",
     "../x.npy", "x.npy.npy", "x.NPY"]
)  # fmt: skip


@st.composite
def npy_member(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["array", "array", "object", "pickle", "bytes", "header", "cut"]))
    if kind == "array":
        return _npy(draw(ARRAYS))
    if kind == "object":
        return _npy(np.array([Canary(), 1], dtype=object), allow_pickle=True)
    if kind == "pickle":
        return pickle.dumps(Canary())
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "header":
        descr, shape = draw(st.sampled_from(HEADER_DESCRS)), draw(st.sampled_from(HEADER_SHAPES))
        order = draw(st.sampled_from(["False", "True", "7", "'C'"]))
        header = f"{{'descr': {descr}, 'fortran_order': {order}, 'shape': {shape}, }}"
        body = draw(st.sampled_from([b"", b"\0" * 48, b"\x7f" * 4096]))
        return _npy_header(header, body, version=draw(st.sampled_from([1, 2])))
    whole = _npy(draw(ARRAYS))  # cut
    return whole[: draw(st.integers(0, len(whole)))]


def _set_flags(data: bytes, *, encrypted: bool = False, method: int | None = None) -> bytes:
    """Mark every member encrypted, or give it an unknown compression method."""
    out = bytearray(data)
    for signature, flags, compression in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        at = out.find(signature)
        while at != -1:
            if encrypted:
                out[at + flags] |= 0x01
            if method is not None:
                out[at + compression : at + compression + 2] = struct.pack("<H", method)
            at = out.find(signature, at + 4)
    return bytes(out)


@st.composite
def npz_file(draw: st.DrawFn) -> bytes:
    """A zip of .npy members (often starting from valid data for a model), possibly damaged."""
    n = draw(st.integers(1, 4))
    floats = st.floats(-1, 1, width=32)
    base = {
        "none": [],
        "one": [("x.npy", _npy(draw(hnp.arrays(np.float32, (n, 4), elements=floats))))],
        "two": [
            ("a.npy", _npy(draw(hnp.arrays(np.int8, (n, 2))))),
            ("x1.npy", _npy(draw(hnp.arrays(np.float32, (n,), elements=floats)))),
        ],
    }[draw(st.sampled_from(["none", "one", "one", "two"]))]
    if base and draw(st.booleans()):
        labels = st.sampled_from([np.int64, np.uint8, np.int8, np.uint64, np.float32])
        base.append(("y.npy", _npy(draw(hnp.arrays(labels, (n,))))))
    members = base + draw(st.lists(st.tuples(MEMBER_NAMES, npy_member()), max_size=3))
    method = draw(
        st.sampled_from(
            [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
        )
    )
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", method) as zf:
        warnings.simplefilter("ignore", UserWarning)  # duplicate member names
        for name, content in members:
            zf.writestr(name, content)
    data = buf.getvalue()
    damage = draw(st.sampled_from(["none"] * 5 + ["cut", "flip", "encrypt", "method", "npy"]))
    at = draw(st.integers(0, max(len(data) - 1, 0)))
    if damage == "cut":
        return data[:at] + data[-22:]  # keep an end-of-central-directory record
    if damage == "flip" and data:
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    if damage == "encrypt":
        return _set_flags(data, encrypted=True)
    if damage == "method":
        return _set_flags(data, method=draw(st.sampled_from([1, 6, 97, 99, 0xFFFF])))
    if damage == "npy":  # an .npy (or pickle) that also looks like a zip from its end
        return draw(npy_member()) + data[-22:]
    return data


@contextmanager
def no_unpickling() -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("edgekit tried to unpickle data")

    with mock.patch.object(pickle, "load", refuse), mock.patch.object(pickle, "loads", refuse):
        yield
    assert not UNPICKLED


def _check_data(path: Path) -> None:
    calls = [
        lambda: load_npz(path, role="eval", specs=ONE_INPUT),
        lambda: load_data(path, role="eval", specs=ONE_INPUT),
        lambda: load_data(path, role="calibration", specs=TWO_INPUTS),
    ]
    for call in calls:
        try:
            with no_unpickling():
                data = call()
        except DataError:
            event("refused")
            continue
        assert isinstance(data, LabelledData)
        event("loaded")
        assert all(isinstance(x, np.ndarray) and x.dtype != object for x in data.xs)
        if data.y is not None:
            assert data.y.dtype == np.int64
            assert data.y.shape == (len(data),)
            assert (data.y >= 0).all()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-data")


def _write(root: Path, data: bytes) -> Path:
    fd, name = tempfile.mkstemp(suffix=".npz", dir=root)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return Path(name)


@FUZZ
@given(
    data=st.binary(max_size=512)
    | st.binary(max_size=64).map(lambda b: b + b"PK\x05\x06" + bytes(18))
)
def test_data_from_arbitrary_bytes(data_root: Path, data: bytes) -> None:
    path = _write(data_root, data)
    try:
        _check_data(path)
    finally:
        path.unlink()


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


_GOOD_X = _npy(np.ones((3, 4), np.float32))
_LONG_X = _npy(np.random.default_rng(0).random((300, 4)).astype(np.float32))


def _declaring_shape(shape: tuple[int, ...], body: bytes = b"") -> bytes:
    """An .npz whose x.npy declares ``shape`` and holds ``body``."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"
    return _zip({"x.npy": _npy_header(header, body, version=1)})


def _corrupt_after(data: bytes, marker: bytes, skip: int = 40, count: int = 20) -> bytes:
    at = data.find(marker) + len(marker) + skip
    return data[:at] + bytes(b ^ 0xFF for b in data[at : at + count]) + data[at + count :]


@SLOW
@given(data=npz_file())
# Found by this test (each crashed load_npz with a non-edgekit exception):
@example(data=_zip({"x.npy": b"not an array"}))  # AttributeError: numpy returns the raw bytes
@example(data=_zip({"x.npy": _GOOD_X, "y": b"labels"}))  # same, for the labels
@example(data=_GOOD_X + _zip({"x.npy": _GOOD_X})[-22:])  # TypeError: an .npy, not an .npz
@example(data=_declaring_shape((2**40,)))  # MemoryError: 4 TiB allocated before reading
@example(data=_declaring_shape((2**64,)))  # OverflowError
@example(data=_declaring_shape((True,), bytes(4)))  # TypeError: numpy reshapes to (True,)
@example(data=_set_flags(_zip({"x.npy": _GOOD_X}), encrypted=True))  # RuntimeError
@example(data=_set_flags(_zip({"x.npy": _GOOD_X}), method=99))  # NotImplementedError
@example(data=_corrupt_after(_zip({"x.npy": _LONG_X}, zipfile.ZIP_DEFLATED), b"x.npy"))  # zlib
@example(data=_corrupt_after(_zip({"x.npy": _LONG_X}, zipfile.ZIP_LZMA), b"x.npy"))  # LZMAError
# Labels beyond int64 were wrapped to negative numbers by astype(int64):
@example(data=_zip({"x.npy": _GOOD_X, "y.npy": _npy(np.array([0, 1, 2**63], np.uint64))}))
@example(data=_zip({"x.npy": _npy(np.array([Canary()], dtype=object), allow_pickle=True)}))
def test_mutated_npz_loads_or_is_refused(data_root: Path, data: bytes) -> None:
    path = _write(data_root, data)
    try:
        _check_data(path)
    finally:
        path.unlink()


def test_a_valid_npz_loads(data_root: Path):
    path = _write(data_root, _zip({"x.npy": _GOOD_X, "y.npy": _npy(np.arange(3))}))
    data = load_data(path, role="eval", specs=ONE_INPUT)
    assert len(data) == 3
    assert data.y is not None
    assert data.y.tolist() == [0, 1, 2]


# --- Images (image-folder data, and files dropped in the daemon's watched folder) -----------------

IMAGE_SPEC = TensorSpec(name="image", shape=(None, 8, 8, 1), dtype="float32")


def _image(fmt: str) -> bytes:
    image = pytest.importorskip("PIL.Image")
    buf = io.BytesIO()
    image.new("RGB", (12, 10), (200, 100, 0)).save(buf, fmt)
    return buf.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` pixels, with one row of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * (width + 1))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


_BROKEN_CHUNK_PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x0c\x00\x00\x00\n\x08\x02\x00\x00\x00\x0fN(\xad"
    b"\x00\x00\x00\x00IDATx\x9cc<\x91\xc2@\x100\x11V2\xaa\x88XE\x00\xbf\xfd\x01@\xf1\x08RY\x00\x00"
    b"\x00\x00IEND\xaeB`\x82"
)


@st.composite
def image_file(draw: st.DrawFn) -> tuple[str, bytes]:
    """A small image in one of the formats image folders hold, maybe truncated or corrupted."""
    suffix, fmt = draw(st.sampled_from([
        (".png", "PNG"), (".jpg", "JPEG"), (".gif", "GIF"), (".bmp", "BMP"), (".tif", "TIFF"),
        (".webp", "WEBP"),
    ]))  # fmt: skip
    data = _image(fmt)
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return suffix, data


@SLOW
@given(case=image_file() | st.tuples(st.sampled_from([".png", ".jpg"]), st.binary(max_size=256)))
# Found while fuzzing: Pillow's DecompressionBombError (not an OSError) crashed load_image, and
# with it the daemon's watched folder.
@example(case=(".png", _png_declaring(100_000, 100_000)))
# Found by a longer run: a broken PNG chunk raised SyntaxError from Pillow.
@example(case=(".png", _BROKEN_CHUNK_PNG))
def test_image_loads_or_is_refused(data_root: Path, case: tuple[str, bytes]) -> None:
    suffix, data = case
    fd, name = tempfile.mkstemp(suffix=suffix, dir=data_root)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about damaged files it still reads
            pixels = load_image(Path(name), spec=IMAGE_SPEC, pixel_range=PixelRange.UNIT)
    except DataError:
        event("refused")
    else:
        event("loaded")
        assert pixels.shape == (8, 8, 1)
        assert pixels.dtype == np.float32
        assert ((pixels >= 0) & (pixels <= 1)).all()
    finally:
        Path(name).unlink()
