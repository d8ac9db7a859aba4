"""Fuzzing device profiles (parse_profile): arbitrary bytes, arbitrary TOML, and the shipped
rpi4.toml mutated node by node and line by line.

Whatever the bytes, parse_profile returns a DeviceProfile or raises ``ProfileError`` naming
the file; any other exception is a crash of the CLI.
"""

from __future__ import annotations

import hashlib
import tomllib
from datetime import UTC
from importlib import resources
from typing import Any

import pytest
from fuzz_strategies import (
    ENCODABLE_TEXT,
    FUZZ,
    LONG_TEXT,
    ODD_TEXT,
    Raw,
    mutated,
    replaced,
    similar,
    toml_document,
    toml_key,
    toml_value,
)
from hypothesis import event, example, given
from hypothesis import strategies as st

from edgekit.errors import ProfileError
from edgekit.profiles import DeviceProfile, parse_profile

# --- Device profiles ------------------------------------------------------------------------------

RPI4_TEXT = resources.files("edgekit.device_profiles").joinpath("rpi4.toml").read_text("utf-8")
RPI4 = tomllib.loads(RPI4_TEXT)
TOML_LITERALS = [
    "nan", "inf", "-inf", "+inf", "1e400", "0x" + "f" * 4000, "1" * 5000, "0o777", "0b101", "1_000",
    "1979-05-27", "07:32:00", "1979-05-27T07:32:00", "1979-05-27T07:32:00Z", "'literal'",
    '"""multi\nline"""', "[", "{", "[1, 2", "{a = 1, a = 2}", "true false", "=",
    "[" * 2000 + "]" * 2000, "{a = " * 500 + "1" + "}" * 500,
]  # fmt: skip
TOML_VALUES = st.recursive(
    st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | ENCODABLE_TEXT
    | st.dates()
    | st.times()
    | st.datetimes()
    | st.datetimes(timezones=st.just(UTC)),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
NASTY_TOML = st.sampled_from([Raw(t) for t in TOML_LITERALS]) | TOML_VALUES | LONG_TEXT
TOML_KEYS = st.sampled_from(
    ["name", "hardware", "build", "cores", "source", "digest", "threads", "", "a.b", "x" * 300]
) | st.text(max_size=8)


def _profile_or_error(raw: bytes) -> None:
    try:
        profile = parse_profile(raw, source="fuzz.toml")
    except ProfileError as exc:
        message = str(exc)
        event("refused")
        assert message.startswith("profile fuzz.toml: ")
        return
    assert isinstance(profile, DeviceProfile)
    event("parsed")
    assert (profile.source, profile.digest) == ("fuzz.toml", hashlib.sha256(raw).hexdigest())


def test_the_toml_writer_round_trips_the_shipped_profile():
    assert tomllib.loads(toml_document(RPI4)) == RPI4
    parse_profile(toml_document(RPI4).encode(), source="fuzz.toml")


@FUZZ
@given(raw=st.binary(max_size=1024))
@example(raw=b"\xef\xbb\xbfname = 'x'")
@example(raw=RPI4_TEXT.encode("utf-16"))
def test_profile_from_arbitrary_bytes(raw: bytes) -> None:
    _profile_or_error(raw)


@FUZZ
@given(doc=st.dictionaries(TOML_KEYS, TOML_VALUES, max_size=6))
def test_profile_from_arbitrary_toml(doc: dict[str, Any]) -> None:
    _profile_or_error(toml_document(doc).encode())


@FUZZ
@given(doc=mutated(RPI4, NASTY_TOML, TOML_KEYS, ENCODABLE_TEXT))
# Found by this test: Python's 4300-digit limit (tomllib reading a long decimal, json writing a
# long hex) and deep nesting (tomllib, json) raised ValueError / RecursionError.
@example(doc=replaced(RPI4, ("hardware", "cores"), Raw("1" * 5000)))
@example(doc=replaced(RPI4, ("hardware", "cores"), Raw("0x" + "f" * 4000)))
@example(doc=replaced(RPI4, ("extra",), Raw("[" * 2000 + "]" * 2000)))
@example(doc=replaced(RPI4, ("extra",), Raw("{a = " * 500 + "1" + "}" * 500)))
# pydantic's own nesting limit used to show the whole file as JSON in the message.
@example(doc=replaced(RPI4, ("extra",), Raw("[" * 300 + "]" * 300)))
@example(doc=replaced(RPI4, ("hardware", "ram_mb"), Raw("1979-05-27")))
def test_mutated_profile_parses_or_is_refused(doc: dict[str, Any]) -> None:
    _profile_or_error(toml_document(doc).encode())


def test_deep_nesting_is_named_not_dumped():
    """pydantic's nesting limit used to quote the whole file, as JSON, in the message."""
    raw = RPI4_TEXT.encode() + b"extra = " + b"[" * 300 + b"]" * 300 + b"\n"
    with pytest.raises(
        ProfileError, match=r"^profile x\.toml: arrays or tables nested too deeply$"
    ):
        parse_profile(raw, source="x.toml")


@st.composite
def mutated_profile_text(draw: st.DrawFn) -> bytes:
    """The shipped rpi4.toml with lines deleted, duplicated, rewritten or inserted."""
    lines = RPI4_TEXT.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1)) if lines else 0
        op = draw(st.sampled_from(["delete", "duplicate", "garbage", "value", "key", "section"]))
        line = lines[i] if lines else ""
        key, eq, _ = line.partition("=")
        if op == "delete" and lines:
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, line)
        elif op == "garbage":
            lines.insert(i, draw(ODD_TEXT | st.sampled_from(TOML_LITERALS)))
        elif op == "value" and eq:
            try:
                (current,) = tomllib.loads(line).values()
            except (ValueError, RecursionError):  # a line this loop made up
                current = None
            like = NASTY_TOML if current is None else similar(current, ENCODABLE_TEXT) | NASTY_TOML
            lines[i] = f"{key}= {toml_value(draw(like))}"
        elif op == "key" and eq:
            lines[i] = f"{toml_key(draw(TOML_KEYS))} ={line.partition('=')[2]}"
        elif op == "section":
            lines.insert(i, f"[{draw(st.sampled_from(['hardware', 'a.b', 'build.x', '', ']']))}]")
    raw = "\n".join(lines).encode("utf-8", "surrogatepass")
    at = draw(st.integers(0, len(raw)))
    return raw[:at] + draw(st.sampled_from([b""] * 3) | st.binary(max_size=4)) + raw[at:]


@FUZZ
@given(raw=mutated_profile_text())
@example(raw=RPI4_TEXT.encode() + b"a" + b".a" * 3000 + b" = 1\n")  # found: RecursionError in json
@example(raw=RPI4_TEXT.encode() + b"[a" + b".a" * 3000 + b"]\n")
def test_mutated_profile_text_parses_or_is_refused(raw: bytes) -> None:
    _profile_or_error(raw)
