"""The curated public API of the ``edgekit`` package."""

import edgekit


def test_all_is_sorted_and_complete():
    assert edgekit.__all__ == sorted(edgekit.__all__)
    for name in edgekit.__all__:
        assert hasattr(edgekit, name), name


def test_every_error_derives_from_edgekit_error():
    errors = [getattr(edgekit, n) for n in edgekit.__all__ if n.endswith("Error")]
    assert len(errors) >= 8
    for error in errors:
        assert issubclass(error, edgekit.EdgekitError)
