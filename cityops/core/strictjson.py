"""Strict JSON: one reading of the bytes, the one every other parser would agree with.

orjson alone already refuses what RFC 8259 forbids and lenient parsers accept (``NaN``,
``Infinity``, numbers that overflow a double, lone surrogates, a byte-order mark, raw control
characters). Two things it reads its own way, and we refuse:

* a duplicated key (``{"entries": 1, "entries": 99999}``): orjson and Python keep the last
  value, other parsers keep the first or fail (RFC 8259 §4: names SHOULD be unique);
* an integer outside the signed/unsigned 64-bit range: orjson turns it into a float (losing
  digits), Python keeps it exact, ClickHouse overflows it.

The extra checks cost a regex scan per record; the exact (slower) parse runs only when the scan
says a record might hold a duplicate key or a big integer.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_KEY_END = re.compile(rb'(?<!\\)(?:\\\\)*"\s*:')
#: the same matches when the record holds no backslash at all (the usual case), 7× faster
_KEY_END_PLAIN = re.compile(rb'"\s*:')
_LONG_INT = re.compile(rb"\d{19,}")
_NON_FINITE = re.compile(rb"-?(?:NaN|Infinity)")
_I64_MIN, _U64_MAX = -(2**63), 2**64 - 1


class StrictJSONError(ValueError):
    """Bytes refused as JSON; ``reason`` is a contract reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _count_keys(value: Any) -> int:
    if isinstance(value, dict):
        nested = [v for v in value.values() if isinstance(v, (dict, list))]
        return len(value) + sum(_count_keys(v) for v in nested)  # flat: no call per value
    if isinstance(value, list):
        return sum(_count_keys(v) for v in value)
    return 0


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise StrictJSONError("duplicate_key", f"key {key[:64]!r} appears more than once")
        out[key] = value
    return out


def _int(text: str) -> int:
    value = int(text)
    if not _I64_MIN <= value <= _U64_MAX:
        raise StrictJSONError("bad_number", f"integer {text[:32]} is outside the 64-bit range")
    return value


def _exact(raw: bytes) -> Any:
    try:
        return json.loads(raw, object_pairs_hook=_pairs, parse_int=_int)
    except StrictJSONError:
        raise
    except ValueError as exc:  # cannot happen after orjson accepted it; refuse anyway
        raise StrictJSONError("bad_json", str(exc)) from None


def loads_strict(raw: bytes) -> Any:
    """Parse ``raw`` or raise ``StrictJSONError`` (``bad_json``, ``non_finite_number``,
    ``duplicate_key``, ``bad_number``)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        text = str(exc)
        if "infinity" in text or _NON_FINITE.match(raw, getattr(exc, "pos", 0) or 0):
            raise StrictJSONError("non_finite_number", "NaN / Infinity is not JSON") from None
        raise StrictJSONError("bad_json", text.split(":")[0]) from None
    key_end = _KEY_END if raw.find(b"\\") >= 0 else _KEY_END_PLAIN
    if isinstance(data, (dict, list)) and (
        len(key_end.findall(raw)) != _count_keys(data) or _LONG_INT.search(raw)
    ):
        return _exact(raw)
    return data
