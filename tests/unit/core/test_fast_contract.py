"""The contract's fast path accepts only what the exact decoder accepts, with the same JSON.

Every case runs both: ``fast_decode`` either leaves a record to ``decode_event`` (``None``)
or accepts it, and then ``decode_event`` must accept it too, with byte-identical clean JSON,
the same aggregation key and the same event time. The cases: the simulator's records (with
its malformed ones), every bad input of the contract tests, and mutations of good records
(types, bounds, duplicate keys, nulls, escapes, times, ids, positions, whitespace).
"""

from __future__ import annotations

import random
import typing
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import msgspec.inspect
import orjson
import pytest
from unit.core.test_feed_contracts import BAD, GOOD

from cityops.core.contract import Rejection, decode_event
from cityops.core.fast_contract import (
    EVENT_ID_PATTERN,
    FAST_TYPES,
    SITE_FIELDS,
    SITE_ID_PATTERN,
    FastPosition,
    _keys_written,
    decode_clean,
    fast_decode,
)
from cityops.core.feeds import FEED_MODELS, Position, ValidationContext
from cityops.core.registry import Registry
from cityops.ingest.simulate.engine import wire_records
from cityops.ingest.simulate.faults import FaultPlan
from cityops.streams.pipeline import aggregation_key

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
MAX_BYTES = 1_000_000


@pytest.fixture(scope="module")
def ctx(registry: Registry) -> ValidationContext:
    return ValidationContext(registry=registry, now=NOW)


def both(feed: str, raw: bytes, ctx: ValidationContext) -> bool:
    """Check the fast path against the exact decoder; True when the fast path accepted."""
    fast = fast_decode(feed, raw, ctx, max_bytes=MAX_BYTES)
    if fast is None:
        return False
    exact = decode_event(feed, raw, ctx, max_bytes=MAX_BYTES)
    assert not isinstance(exact, Rejection), f"fast path accepted {raw!r}; exact: {exact}"
    assert fast.to_json() == exact.to_json(), raw
    assert fast.unit() == aggregation_key(exact)
    assert fast.event_id == exact.event_id and fast.source == exact.source
    assert fast.event_time == exact.event_time
    assert fast.event_time.utcoffset() == exact.event_time.utcoffset()
    return True


def test_simulated_records_take_the_fast_path_with_the_exact_result(
        registry: Registry, ctx: ValidationContext) -> None:
    start = NOW - timedelta(hours=6)
    fast = total = 0
    for rec in wire_records(registry, seed=7, start=start, end=start + timedelta(hours=2)):
        total += 1
        fast += both(rec.feed, rec.value, ctx)
    assert total > 1000
    assert fast == total, f"only {fast} of {total} plain records took the fast path"


def test_malformed_simulated_records_are_left_to_the_exact_decoder(
        registry: Registry, ctx: ValidationContext) -> None:
    start = NOW - timedelta(hours=6)
    malformed = 0
    for rec in wire_records(registry, seed=11, start=start, end=start + timedelta(hours=1),
                            faults=FaultPlan(malformed=0.3)):
        accepted = both(rec.feed, rec.value, ctx)
        if rec.fault and rec.fault.startswith("malformed:"):
            malformed += 1
            exact = decode_event(rec.feed, rec.value, ctx, max_bytes=MAX_BYTES)
            if isinstance(exact, Rejection):
                assert not accepted, rec.fault
    assert malformed > 100


@pytest.mark.parametrize(("feed", "raw", "reason"), BAD,
                         ids=[f"{f}-{r}-{i}" for i, (f, _, r) in enumerate(BAD)])
def test_every_bad_input_of_the_contract_tests_is_left_to_the_exact_decoder(
        feed: str, raw: bytes, reason: str, ctx: ValidationContext) -> None:
    assert fast_decode(feed, raw, ctx, max_bytes=MAX_BYTES) is None, reason


def test_good_records_take_the_fast_path_except_a_gcj02_position(
        ctx: ValidationContext) -> None:
    taken = {feed: both(feed, orjson.dumps(data), ctx) for feed, data in GOOD.items()}
    assert taken == {"footfall": True, "parking": True, "air": True, "incidents": False}
    wgs = dict(GOOD["incidents"], position={"lat": 29.56, "lon": 106.57, "crs": "WGS84"})
    assert both("incidents", orjson.dumps(wgs), ctx)
    bare = dict(GOOD["incidents"], position={"lat": 29.56, "lon": 106.57})
    assert both("incidents", orjson.dumps(bare), ctx)


def _variants(data: dict) -> list[bytes]:
    """Mutations of one good record: some still valid, most not, some the fast path must
    refuse to judge (escapes, duplicate keys, nulls)."""
    out: list[bytes] = []
    text = orjson.dumps(data).decode()
    values: list[object] = [None, 0, -1, 1, 1.5, -0.0, 3.0, 1e308, 2**63, 10**19, 100_000,
                            100_001, 20_000, 20_001, "", "x", "1", True, False, [], {},
                            "a b", "a\n", "é", "x" * 65, "x" * 129]
    for key in data:
        for value in values:
            out.append(orjson.dumps({**data, key: value}))
        rest = {k: v for k, v in data.items() if k != key}
        out.append(orjson.dumps(rest))
        # the same key twice: the first value wins in some parsers, the last in others
        out.append(text[:-1].encode() + b', "' + key.encode() + b'": ' + orjson.dumps(
            data[key]) + b"}")
        # ... and written again with a space before its colon (a key end ``":`` alone
        # would not count)
        out.append(text[:-1].encode() + b', "' + key.encode() + b'" : ' + orjson.dumps(
            data[key]) + b"}")
        out.append(text.replace(f'"{key}":', f'"{key}" :').encode())
        out.append(text.replace(f'"{key}":', f'"\\u0020{key}":').encode())
    for stamp in ("2026-11-27T19:30:00+08:00", "2026-11-27T19:30:00Z", "2026-11-27T19:30Z",
                  "2026-11-27 19:30:00+08:00", "2026-11-27T19:30:00.5+08:00",
                  "2026-11-27T19:30:00.1234567+08:00", "2026-11-27T19:30:00+0800",
                  "2026-11-27T19:30:00+23:59", "2026-11-27T19:30:00-00:00",
                  "2026-11-27T19:30:00z", "2026-11-27t19:30:00Z", "2026-02-30T19:30:00Z",
                  "2026-11-27T24:00:00Z", "2026-11-27T23:59:60Z", "1999-12-31T23:59:59Z",
                  "2026-11-27T12:04:59Z", "2026-11-27T12:05:01Z", "+2026-11-27T19:30:00Z",
                  "2026-11-27T19:30:00.000000+08:00", "2026-11-27T19:30:00+08:00\n"):
        out.append(orjson.dumps({**data, "event_time": stamp}))
    for pos in ({"lat": 29.5, "lon": 106.5}, {"lat": 29.5, "lon": 106.5, "crs": "WGS84"},
                {"lat": 29.5, "lon": 106.5, "crs": "GCJ02"}, {"lat": 29, "lon": 106},
                {"lat": 91, "lon": 106}, {"lat": 29.5}, {"lat": 29.5, "lon": 106.5, "x": 1},
                {"lat": "29.5", "lon": 106.5}, None, [29.5, 106.5]):
        out.append(orjson.dumps({**data, "position": pos}))
    out += [b" " + text.encode() + b"\n", text.encode() + b"x", text.encode()[:-1],
            b"\xef\xbb\xbf" + text.encode(), text.replace('"', "'").encode(), b"{}", b"[]",
            b"null", text.encode().replace(b'"event_id": "', b'"event_id": "\\ud800')]
    return out


@pytest.mark.parametrize("feed", sorted(GOOD))
def test_mutated_records_agree_with_the_exact_decoder(
        feed: str, ctx: ValidationContext) -> None:
    accepted = checked = 0
    for raw in _variants(GOOD[feed]):
        checked += 1
        accepted += both(feed, raw, ctx)
    assert checked > 200
    assert 0 < accepted < checked


def test_random_numbers_give_the_same_json(ctx: ValidationContext) -> None:
    rnd = random.Random(5)
    for _ in range(2000):
        data = dict(GOOD["air"], pm25_ugm3=rnd.uniform(0, 2000), co_mgm3=rnd.random() * 200,
                    temperature_c=round(rnd.uniform(-30, 50), rnd.randrange(0, 12)),
                    humidity_pct=rnd.choice([rnd.randrange(0, 101), rnd.random() * 100]))
        assert both("air", orjson.dumps(data), ctx)


def test_fast_path_honours_the_context(registry: Registry) -> None:
    raw = orjson.dumps({k: v for k, v in GOOD["parking"].items() if k != "free"}
                       | {"occupied": 680})
    tight = ValidationContext(registry=registry, now=NOW, occupancy_tolerance=0.0)
    assert fast_decode("parking", raw, tight, max_bytes=MAX_BYTES) is None  # 680 > 650
    loose = ValidationContext(registry=registry, now=NOW, occupancy_tolerance=0.05)
    assert both("parking", raw, loose)
    early = ValidationContext(registry=registry, now=NOW - timedelta(days=1))
    assert fast_decode("footfall", orjson.dumps(GOOD["footfall"]), early,
                       max_bytes=MAX_BYTES) is None  # ahead of that clock
    assert fast_decode("footfall", orjson.dumps(GOOD["footfall"]), ValidationContext(
        registry=registry, now=NOW), max_bytes=10) is None  # over the size limit


def test_an_event_time_at_the_clock_skew_limit_is_left_to_the_exact_decoder(
        registry: Registry) -> None:
    """The fast path compares float seconds; within a millisecond of the limit the exact
    decoder's datetime arithmetic decides (it accepts an event exactly at the limit)."""
    ctx = ValidationContext(registry=registry, now=NOW, max_clock_skew_s=300)

    def ahead(seconds: float) -> bytes:
        when = (NOW + timedelta(seconds=seconds)).astimezone(UTC)
        return orjson.dumps(dict(GOOD["footfall"], event_time=when.isoformat()))

    for seconds in (300, 299.9995, 300.000001):
        assert fast_decode("footfall", ahead(seconds), ctx, max_bytes=MAX_BYTES) is None
    assert not isinstance(decode_event("footfall", ahead(300), ctx, max_bytes=MAX_BYTES),
                          Rejection)
    assert isinstance(decode_event("footfall", ahead(300.000001), ctx, max_bytes=MAX_BYTES),
                      Rejection)
    assert both("footfall", ahead(299.998), ctx)


def test_keys_are_counted_as_the_key_end_pattern_counts_them() -> None:
    """``_keys_written`` counts ``":`` and falls back to the regex only when a quote is
    followed by whitespace: the same count on any bytes of quotes, colons and spaces."""
    import re

    pattern = re.compile(rb'"\s*:')
    rnd = random.Random(3)
    alphabet = [b'"', b":", b" ", b"\t", b"\n", b"\r", b"\x0b", b"\x0c", b"a", b",", b"{"]
    for _ in range(20_000):
        raw = b"".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 24)))
        assert _keys_written(raw) == len(pattern.findall(raw)), raw
    good = orjson.dumps(GOOD["footfall"])
    assert _keys_written(good) == len(GOOD["footfall"]) == good.count(b'":')


def _model_rules(field: Any) -> dict[str, Any]:
    metadata = list(field.metadata)
    for arg in typing.get_args(field.annotation):  # ``Count | None``: the rules are Count's
        for info in getattr(arg, "__metadata__", ()):
            metadata.extend(getattr(info, "metadata", [info]))
    rules: dict[str, Any] = {}
    for meta in metadata:
        for name in ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern"):
            value = getattr(meta, name, None)
            if value is not None:
                rules[name] = value.replace("$", "\\Z") if name == "pattern" else value
    return rules


def _struct_rules(typ: Any, struct: type, field: str) -> dict[str, Any]:
    """A struct field's rules: msgspec's, and the ids' characters, checked after decoding
    (``SITE_FIELDS``, ``EVENT_ID_PATTERN``)."""
    if isinstance(typ, msgspec.inspect.UnionType):  # ``X | None``: the rules are X's
        typ = next(t for t in typ.types if not isinstance(t, msgspec.inspect.NoneType))
    rules = {name: getattr(typ, name) for name in
             ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern")
             if getattr(typ, name, None) is not None}
    if field == "event_id":
        rules["pattern"] = f"^{EVENT_ID_PATTERN.pattern}\\Z"
    elif field in SITE_FIELDS.get(struct, ()):
        rules["pattern"] = f"^{SITE_ID_PATTERN.pattern}\\Z"
    return rules


@pytest.mark.parametrize("feed", sorted(FEED_MODELS))
def test_fast_structs_mirror_the_models_fields_and_bounds(feed: str) -> None:
    """A field or bound changed in ``core.feeds`` must change in the fast path too (a field
    added there only would send every record that has it to the exact decoder)."""
    pairs = [(FEED_MODELS[feed], FAST_TYPES[feed]), (Position, FastPosition)]
    for model, struct in pairs:
        info = msgspec.inspect.type_info(struct)
        assert [f.name for f in info.fields] == list(model.model_fields)
        for f in info.fields:
            assert _struct_rules(f.type, struct, f.name) == _model_rules(
                model.model_fields[f.name]), (
                f"{struct.__name__}.{f.name}")


@pytest.mark.parametrize("feed", sorted(GOOD))
def test_clean_reading_gives_the_fast_paths_struct(feed: str, ctx: ValidationContext) -> None:
    """``decode_clean`` trusts a clean record's JSON form: on every variant the fast path
    accepts, it gives the same struct, from the variant and from the clean JSON written."""
    clean_ctx = ValidationContext(now=NOW)
    good = GOOD[feed]
    if feed == "incidents":  # its GCJ-02 position is the exact decoder's
        good = dict(good, position={"lat": 29.56, "lon": 106.57, "crs": "WGS84"})
    compared = 0
    for raw in _variants(good):
        fast = fast_decode(feed, raw, ctx, max_bytes=MAX_BYTES)
        if fast is None:
            continue
        compared += 1
        for data in (raw, fast.to_json()):
            again = decode_clean(feed, data, clean_ctx)
            assert again == fast, data
            assert again is not None and again.event_time.utcoffset() == (
                fast.event_time.utcoffset())
    assert compared > 10


def test_clean_reading_leaves_to_the_model_what_it_does_not_trust() -> None:
    clean_ctx = ValidationContext(now=NOW, occupancy_tolerance=0.0)
    good = {feed: orjson.dumps(data) for feed, data in GOOD.items()}
    assert decode_clean("footfall", good["footfall"], clean_ctx) is not None
    refused = {
        "gcj02 position": ("incidents", good["incidents"]),
        "escaped text": ("footfall", good["footfall"].replace(b'"zone_id"', b'"zone\\u005fid"')),
        "no offset": ("footfall", orjson.dumps(dict(GOOD["footfall"],
                                                    event_time="2026-11-27T19:30:00"))),
        "ahead of the clock": ("footfall", orjson.dumps(dict(
            GOOD["footfall"], event_time=(NOW + timedelta(hours=1)).isoformat()))),
        "over capacity": ("parking", orjson.dumps(
            {k: v for k, v in GOOD["parking"].items() if k != "free"} | {"occupied": 680})),
        "a wrong type": ("footfall", orjson.dumps(dict(GOOD["footfall"], entries="3"))),
        "out of bounds": ("footfall", orjson.dumps(dict(GOOD["footfall"], entries=-1))),
        "an unknown field": ("footfall", orjson.dumps(dict(GOOD["footfall"], extra=1))),
        "a missing field": ("footfall", orjson.dumps(
            {k: v for k, v in GOOD["footfall"].items() if k != "zone_id"})),
        "not a time": ("footfall", orjson.dumps(dict(GOOD["footfall"], event_time="soon"))),
        "an event id with a space": ("footfall", orjson.dumps(dict(GOOD["footfall"],
                                                                   event_id="fc 1"))),
        "a zone id with a colon": ("footfall", orjson.dumps(dict(GOOD["footfall"],
                                                                 zone_id="jfb:square"))),
        "a source with a slash": ("parking", orjson.dumps(dict(GOOD["parking"],
                                                               source="cp/1"))),
        "an incident id with a dot": ("incidents", orjson.dumps(dict(
            GOOD["incidents"], incident_id="inc.1", position={"lat": 29.56, "lon": 106.57}))),
        "not json": ("footfall", b'{"event_id": '),
        "an unknown feed": ("weather", good["footfall"]),
    }
    taken = {why: decode_clean(feed, raw, clean_ctx) for why, (feed, raw) in refused.items()}
    assert taken == dict.fromkeys(refused)


def test_site_ids_already_matched_are_remembered_within_a_bound(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Site ids that matched their pattern are looked up, not matched again; the set of them
    is emptied when it reaches its bound (unique incident ids must not grow it for ever), and
    an id is judged the same whether remembered or not."""
    from cityops.core import fast_contract

    clean_ctx = ValidationContext(now=NOW)
    monkeypatch.setattr(fast_contract, "_GOOD_SITES", set())
    monkeypatch.setattr(fast_contract, "_GOOD_SITES_MAX", 5)
    for n in range(12):
        raw = orjson.dumps(dict(GOOD["incidents"], incident_id=f"inc_{n}",
                                position={"lat": 29.56, "lon": 106.57}))
        assert decode_clean("incidents", raw, clean_ctx) is not None
        assert len(fast_contract._GOOD_SITES) <= 5
    assert "inc_11" in fast_contract._GOOD_SITES
    bad = orjson.dumps(dict(GOOD["incidents"], incident_id="inc 11",
                            position={"lat": 29.56, "lon": 106.57}))
    assert decode_clean("incidents", bad, clean_ctx) is None
    assert "inc 11" not in fast_contract._GOOD_SITES
