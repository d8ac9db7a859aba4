"""Strategies shared by the fuzz tests (test_fuzz_*.py): hostile text, JSON and TOML writers
that emit what the standard serializers refuse to (NaN, 1e400, deep nesting, lone surrogates),
and mutations of a valid document one node at a time.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, time
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Sized so each fuzz file runs in well under a minute on two cores.
FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FAST = settings(FUZZ, max_examples=1000)
SLOW = settings(FUZZ, max_examples=300)  # each example writes files


# --- JSON and TOML text with the literals the standard serializers refuse to write ----------------


@dataclass(frozen=True)
class Raw:
    """Text written verbatim into a JSON or TOML document (NaN, 1e400, deep nesting, ...)."""

    text: str


def json_text(value: Any, *, ascii_only: bool) -> str:
    """JSON text of ``value``; floats may come out as NaN/Infinity, strings may hold surrogates."""
    if isinstance(value, Raw):
        return value.text
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return json.dumps(value)  # NaN, Infinity, -Infinity, -0.0, 1e+308
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=ascii_only)
    if isinstance(value, list):
        return "[" + ",".join(json_text(v, ascii_only=ascii_only) for v in value) + "]"
    items = (
        f"{json.dumps(k, ensure_ascii=ascii_only)}:{json_text(v, ascii_only=ascii_only)}"
        for k, v in value.items()
    )
    return "{" + ",".join(items) + "}"


def json_bytes(value: Any, *, ascii_only: bool = True) -> bytes:
    # surrogatepass: a lone surrogate becomes the (invalid UTF-8) bytes a careless sender writes.
    return json_text(value, ascii_only=ascii_only).encode("utf-8", "surrogatepass")


def toml_string(text: str) -> str:
    escaped = "".join(
        "\\" + ch if ch in '"\\' else f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ch == "\x7f" else ch
        for ch in text
    )
    return f'"{escaped}"'


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_value(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, date | time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    pairs = (f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
    return "{" + ", ".join(pairs) + "}"


def toml_document(doc: dict[str, Any]) -> str:
    """A TOML document: top-level keys first, then one [table] per top-level table."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for name, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{toml_key(name)}]")
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


# --- Mutating a valid document: drop, replace, retype, add or rename one node at a time -----------

NodePath = tuple[str | int, ...]


def _children(node: Any) -> Iterator[tuple[str | int, Any]]:
    if isinstance(node, dict):
        yield from node.items()
    elif isinstance(node, list):
        yield from enumerate(node)


def _paths(node: Any, prefix: NodePath = ()) -> list[NodePath]:
    out: list[NodePath] = []
    for key, child in _children(node):
        out.append((*prefix, key))
        out += _paths(child, (*prefix, key))
    return out


def _at(doc: Any, path: NodePath) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def replaced(doc: dict[str, Any], path: NodePath, value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with the node at ``path`` set to ``value`` (for explicit examples)."""
    out = copy.deepcopy(doc)
    _at(out, path[:-1])[path[-1]] = value
    return out


def weighted(*options: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of ``options`` chosen by weight (``a | b`` draws each half the time)."""
    return st.sampled_from([s for weight, s in options for _ in range(weight)]).flatmap(lambda s: s)


def similar(value: Any, texts: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Values of the same type as ``value``, edge cases included: mutations that may still pass."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers() | st.sampled_from(
            [0, -1, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1]
        )
    if isinstance(value, float):
        return (
            st.floats()
            | st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, math.inf, -math.inf, math.nan])
            | st.integers(-10, 10**6)
        )
    if isinstance(value, str):
        edits = [value + "x", value.upper(), value[:-1], " " + value, value + "\x00", value * 3]
        return texts | LONG_TEXT | st.sampled_from(edits)
    if isinstance(value, list):
        return st.sampled_from([[], value * 2, value[:1], value[::-1]])
    return st.just({} if isinstance(value, dict) else value)


@st.composite
def mutated(
    draw: st.DrawFn,
    base: dict[str, Any],
    values: st.SearchStrategy[Any],
    keys: st.SearchStrategy[str],
    texts: st.SearchStrategy[str] | None = None,
) -> dict[str, Any]:
    """``base`` with one to three nodes dropped, replaced (by anything or by a value of the same
    type), added or renamed."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _at(doc, path[:-1]), path[-1]
        ops = ["drop", "set", "set", "similar", "similar", "similar", "add", "rename"]
        op = draw(st.sampled_from(ops))
        # Copies: st.just() draws one shared object, which could otherwise end up inside itself.
        if op == "drop":
            del parent[key]
        elif op == "set":
            parent[key] = copy.deepcopy(draw(values))
        elif op == "similar":
            parent[key] = copy.deepcopy(
                draw(similar(parent[key], ODD_TEXT if texts is None else texts))
            )
        elif op == "add":
            (parent if isinstance(parent, dict) else doc)[draw(keys)] = copy.deepcopy(draw(values))
        elif isinstance(parent, dict):  # rename
            parent[draw(keys)] = parent.pop(key)
    return doc


# Strings a careless or hostile sender writes: NUL, lone surrogates, bidi controls, astral chars.
ODD_TEXT = st.text(
    st.characters(codec=None, exclude_categories=())  # surrogates included
    | st.sampled_from(["\x00", "\ud800", "\udfff", "\u202e", "\ufeff", "😀", "é", "/", "+", "#"]),
    max_size=24,
)
# Lengths at and just past the schema's limits (8, 64, 128, 200, 255), and past the payload limit.
LONG_TEXT = st.sampled_from([7, 8, 63, 64, 65, 100, 101, 128, 129, 200, 201, 255, 256, 70_000]).map(
    lambda n: "a" * n
)
NUMBER_LITERALS = [
    "NaN", "Infinity", "-Infinity", "1e308", "-1e308", "1e400", "-1e400", "1e-400", "-0.0", "-0",
    "0", str(2**63 - 1), str(2**63), str(2**64), str(-(2**63) - 1), "1" * 5000, "1.5E3", "01",
    "+1", ".5", "1.", "0x10",
]  # fmt: skip
DEEP_JSON = [Raw("[" * n + "]" * n) for n in (64, 199, 201, 5000)] + [
    Raw('{"a":' * n + "1" + "}" * n) for n in (64, 201, 5000)
]
TIMESTAMPS = [
    "2025-03-01T12:00:00+00:00", "2025-03-01T12:00:00", "2025-03-01T12:00:00Z",
    "9999-12-31T23:59:59.999999+23:59", "0001-01-01T00:00:00-23:59", "2025-02-30T00:00:00Z",
    "2025-03-01T24:00:00Z", "2025-03-01 12:00:00+01:00", "1e10", "",
]  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
NASTY_JSON = st.one_of(
    st.sampled_from([Raw(t) for t in NUMBER_LITERALS] + DEEP_JSON),
    st.sampled_from(TIMESTAMPS),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    ODD_TEXT,
    LONG_TEXT,
    JSON_VALUES,
)
JSON_KEYS = (
    st.sampled_from(["schema", "schema_id", "surprise", "", "message_id", "x" * 300]) | ODD_TEXT
)
# TOML text, file and member names: UTF-8, so no lone surrogates.
ENCODABLE_TEXT = ODD_TEXT.filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s))
