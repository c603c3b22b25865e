"""Strict JSON: inputs that parsers read differently are refused with a reason code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cityops.core import strictjson
from cityops.core.contract import Rejection, decode_event
from cityops.core.strictjson import StrictJSONError, loads_strict


@pytest.mark.parametrize(("raw", "reason"), [
    (b'{"entries": 1, "exits": 2, "entries": 99999}', "duplicate_key"),
    (b'{"a": {"b": 1, "b": 1}}', "duplicate_key"),
    (b'[{"a": 1}, {"k": ":", "k": 2}]', "duplicate_key"),
    (b'{"a": NaN}', "non_finite_number"),
    (b'{"a": -Infinity}', "non_finite_number"),
    (b'{"a": 1e400}', "non_finite_number"),
    (b'{"a": 123456789012345678901234567890}', "bad_number"),
    (b'{"a": -9223372036854775809}', "bad_number"),
    (b'{"a": "\\ud800"}', "bad_json"),            # lone surrogate (Python would accept it)
    (b'\xef\xbb\xbf{"a": 1}', "bad_json"),        # byte-order mark
    (b'{"a": 1,}', "bad_json"),
    (b'{"a": "x\x01"}', "bad_json"),
])
def test_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(StrictJSONError) as err:
        loads_strict(raw)
    assert err.value.reason == reason


@pytest.mark.parametrize("raw", [
    b'{"a": 1, "b": {"a": 2}}',                   # same key at different levels is fine
    b'{"t": ":00", "u": "\\":", "v": "a\\\\"}',    # quotes and colons inside strings
    b'{"id": "12345678901234567890123"}',         # long digit run inside a string
    b'{"a": 18446744073709551615, "b": -9223372036854775808}',
    b'[1, 2, {"x": [true, null]}]',
])
def test_accepted_like_every_parser(raw: bytes) -> None:
    assert loads_strict(raw) == json.loads(raw)


def test_decode_event_names_the_duplicate_key() -> None:
    raw = (b'{"schema_version": 1, "event_id": "e1", "entries": 1, "entries": 99999}')
    result = decode_event("footfall", raw)
    assert isinstance(result, Rejection) and result.reason == "duplicate_key"
    assert "entries" in result.detail


@pytest.mark.parametrize("raw", [
    b'{"a": 1, "b" : {"c": [1, {"d": 2}]}, "e": "x\\":y"}',  # escaped quote: slow path
    b'{"a": "colon \\" : inside", "a": 2}',
    b'{"a": "has \\":\\" too"}',
    b'{"a" :1,"b"\t:2, "c"\n: "\\u0041"}',
    b'{"a": "text with \\": in it", "b": 1}',
    b'{"k": 1, "k" : 2}',
    b'{"v": "no backslash ": here", "w": 1}',
    b'{"x": {"y": {"z": 1}}, "x" :0}',
])
def test_fast_key_count_agrees_with_the_exact_parse(raw: bytes) -> None:
    """Records without a backslash take a cheaper key scan; it must refuse and accept
    exactly what the exact parser does."""
    def outcome(fn: Any) -> Any:
        try:
            return ("ok", fn(raw))
        except StrictJSONError as exc:
            return ("refused", exc.reason)
    assert outcome(loads_strict) == outcome(strictjson._exact)
