"""Calibration/eval data: .npz and image folders, checked against the model's input."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.datasets import load_data
from edgekit.errors import DataError
from edgekit.manifest import TensorSpec
from edgekit.vocab import PixelRange

SPEC = TensorSpec(name="image", shape=(None, 8, 8, 1), dtype="float32")


def _npz(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


def test_npz_with_labels(tmp_path):
    x = np.random.default_rng(0).random((5, 8, 8, 1), dtype=np.float32)
    data = load_data(_npz(tmp_path, x=x, y=np.arange(5)), role="eval", specs=(SPEC,))
    assert len(data) == 5
    np.testing.assert_array_equal(data.y, np.arange(5))


def test_npz_without_x(tmp_path):
    with pytest.raises(DataError, match=r"no array named 'x' or 'image' \(found: images\)"):
        load_data(
            _npz(tmp_path, images=np.zeros((2, 8, 8, 1), np.float32)), role="eval", specs=(SPEC,)
        )


def test_npz_wrong_shape_suggests_channel_axis(tmp_path):
    path = _npz(tmp_path, x=np.zeros((3, 8, 8), np.float32))
    with pytest.raises(DataError, match="add a trailing channel axis"):
        load_data(path, role="calibration", specs=(SPEC,))


def test_npz_integer_pixels_for_float_model(tmp_path):
    path = _npz(tmp_path, x=np.zeros((3, 8, 8, 1), np.uint8))
    with pytest.raises(DataError, match="dtype uint8"):
        load_data(path, role="calibration", specs=(SPEC,))


def test_empty_set(tmp_path):
    path = _npz(tmp_path, x=np.zeros((0, 8, 8, 1), np.float32))
    with pytest.raises(DataError, match=r"empty \(0 samples\)"):
        load_data(path, role="calibration", specs=(SPEC,))


def test_nan_values(tmp_path):
    x = np.zeros((2, 8, 8, 1), np.float32)
    x[1, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        load_data(_npz(tmp_path, x=x), role="eval", specs=(SPEC,))


def test_one_hot_labels_rejected(tmp_path):
    path = _npz(tmp_path, x=np.zeros((2, 8, 8, 1), np.float32), y=np.eye(2, dtype=np.int64))
    with pytest.raises(DataError, match="one-hot"):
        load_data(path, role="eval", specs=(SPEC,))


def test_label_count_mismatch(tmp_path):
    path = _npz(tmp_path, x=np.zeros((2, 8, 8, 1), np.float32), y=np.arange(3))
    with pytest.raises(DataError, match=r"expected \(2,\)"):
        load_data(path, role="eval", specs=(SPEC,))


def test_not_an_npz(tmp_path):
    path = tmp_path / "data.npz"
    path.write_bytes(b"hello")
    with pytest.raises(DataError, match=r"not an \.npz file"):
        load_data(path, role="eval", specs=(SPEC,))


def test_pickled_object_arrays_are_not_loaded(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="cannot read it"):
        load_data(path, role="eval", specs=(SPEC,))


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_data(tmp_path / "nope.npz", role="eval", specs=(SPEC,))


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(3):
            pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / label / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    data = load_data(tmp_path, role="eval", specs=(SPEC,))
    assert data.x.shape == (6, 8, 8, 1)
    assert data.x.min() >= 0.0
    assert data.x.max() <= 1.0
    np.testing.assert_array_equal(data.y, [0, 0, 0, 1, 1, 1])
    sym = load_data(tmp_path, role="eval", specs=(SPEC,), pixel_range=PixelRange.SYMMETRIC)
    assert sym.x.min() < 0


def test_image_folder_with_a_broken_image(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"not png")
    with pytest.raises(DataError, match=r"cannot read image .*x\.png"):
        load_data(tmp_path, role="calibration", specs=(SPEC,))


def test_image_folder_needs_image_shaped_input(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match="image folders need"):
        load_data(
            tmp_path, role="eval", specs=(TensorSpec(name="v", shape=(None, 10), dtype="float32"),)
        )


def test_several_inputs_by_name_or_position(tmp_path):
    ids = TensorSpec(name="token_ids", shape=(None, 6), dtype="int64")
    mask = TensorSpec(name="mask", shape=(None, 6), dtype="float32")
    tokens = np.arange(12, dtype=np.int64).reshape(2, 6)
    by_name = _npz(tmp_path, token_ids=tokens, mask=np.ones((2, 6), np.float32))
    data = load_data(by_name, role="eval", specs=(ids, mask))
    assert data.xs[0].dtype == np.int64
    assert len(data) == 2
    by_position = tmp_path / "pos.npz"
    np.savez(by_position, x0=tokens, x1=np.ones((2, 6), np.float32))
    assert len(load_data(by_position, role="eval", specs=(ids, mask))) == 2
    missing = tmp_path / "missing.npz"
    np.savez(missing, x0=tokens)
    with pytest.raises(DataError, match="no array named 'mask' or 'x1'"):
        load_data(missing, role="eval", specs=(ids, mask))


def test_float_data_for_an_integer_input_is_refused(tmp_path):
    ids = TensorSpec(name="token_ids", shape=(None, 6), dtype="int64")
    path = _npz(tmp_path, x=np.zeros((2, 6), np.float32))
    with pytest.raises(DataError, match="takes int64"):
        load_data(path, role="eval", specs=(ids,))
