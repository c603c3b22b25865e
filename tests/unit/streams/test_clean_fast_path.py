"""The aggregation step reads clean records with the contract's fast path: same aggregates.

``core.fast_contract.decode_clean`` hands the aggregators msgspec structs instead of the
pydantic models; the aggregators must give byte-identical records, outcomes and state from
either, on a simulated day of all four feeds (with late, duplicate and out-of-order events).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

from cityops.core.fast_contract import FastEvent, clean_context, decode_clean
from cityops.core.feeds import FEED_MODELS
from cityops.core.registry import Registry
from cityops.core.settings import FEEDS, Settings
from cityops.ingest.simulate.engine import wire_records
from cityops.ingest.simulate.faults import FaultPlan
from cityops.streams.aggregation import AggregationStage
from cityops.streams.app import declare_topics, make_app
from cityops.streams.feed_aggregators import aggregator_for
from cityops.streams.pipeline import ORIGIN_HEADER, aggregation_key
from cityops.streams.records import built

START = datetime(2026, 11, 20, 16, 0, tzinfo=UTC)
EMITTED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CTX = clean_context(300.0)


def _clean_records(registry: Registry) -> list[tuple[str, bytes]]:
    """The simulator's events as ``clean.<feed>`` holds them (the model's JSON)."""
    faults = FaultPlan(duplicates=0.02, late=0.03, out_of_order=0.05)
    out = []
    for rec in wire_records(registry, seed=3, start=START, end=START + timedelta(hours=5),
                            faults=faults):
        model = FEED_MODELS[rec.feed].model_validate_json(rec.value)
        out.append((rec.feed, model.to_json()))
    return out


def test_every_simulated_clean_record_decodes_fast_to_the_models_values(
        registry: Registry) -> None:
    records = _clean_records(registry)
    assert {feed for feed, _ in records} == set(FEEDS)
    for feed, raw in records:
        fast = decode_clean(feed, raw, CTX)
        assert isinstance(fast, FastEvent), raw
        model = FEED_MODELS[feed].model_validate_json(raw)
        assert fast.to_json() == raw == model.to_json()
        assert fast.unit() == aggregation_key(model)


def test_aggregators_give_the_same_records_from_structs_and_models(
        settings: Settings, registry: Registry) -> None:
    records = _clean_records(registry)
    for feed in FEEDS:
        by_model = aggregator_for(feed, settings, registry)
        by_struct = aggregator_for(feed, settings, registry)
        units: set[str] = set()
        compared = 0
        for partition, (_, raw) in enumerate(r for r in records if r[0] == feed):
            model = FEED_MODELS[feed].model_validate_json(raw)
            fast = decode_clean(feed, raw, CTX)
            assert fast is not None
            unit = by_model.unit(aggregation_key(model), partition % 6)
            assert unit == by_struct.unit(fast.unit(), partition % 6)
            units.add(unit)
            a = by_model.add(unit, model, EMITTED)
            b = by_struct.add(unit, fast, EMITTED)
            assert (a.accepted, a.lateness_s, a.watermark, a.violations) == (
                b.accepted, b.lateness_s, b.watermark, b.violations)
            assert [r.to_json() for r in built(a.records)] == [
                r.to_json() for r in built(b.records)]
            compared += len(a.records)
        assert compared > 0, feed
        for unit in units:
            assert by_model.to_state(unit) == by_struct.to_state(unit)


def test_a_clean_record_of_a_site_no_longer_registered_still_decodes() -> None:
    raw = (b'{"event_id":"x:1","schema_version":1,"source":"fc_gone_01",'
           b'"event_time":"2026-11-27T19:30:00+08:00","zone_id":"gone_zone","entries":3,'
           b'"exits":1,"interval_s":30}')
    fast = decode_clean("footfall", raw, CTX)
    assert fast is not None and fast.unit() == "gone_zone"
    assert fast.to_json() == FEED_MODELS["footfall"].model_validate_json(raw).to_json()


def test_a_clean_record_ahead_within_the_configured_skew_is_aggregated(
        settings: Settings, registry: Registry, tmp_path: Path) -> None:
    """Validation accepted it with ``CITYOPS_MAX_CLOCK_SKEW_S`` = 900; the aggregation step
    refused it with the model's default of 300 s, as an undecodable clean record."""
    s = settings.model_copy(update={"data_dir": tmp_path, "max_clock_skew_s": 900.0})
    app = make_app(s)
    stage = AggregationStage("footfall", s, registry, app, declare_topics(app, s))
    applied: list[Any] = []

    async def publish(out: Any) -> None:
        applied.append(out)

    stage.publish = publish  # type: ignore[method-assign]
    stage.snaps[0] = {}  # nothing to restore: no state log read
    ahead = datetime.now(UTC) + timedelta(seconds=600)
    raw = orjson.dumps({"event_id": "fc_jfb_square_01:1", "source": "fc_jfb_square_01",
                        "event_time": ahead.isoformat(), "zone_id": "jfb_square",
                        "entries": 4, "exits": 1, "interval_s": 30})
    for value in (raw, raw.replace(b'"entries"', b'"dwell_s":null,"entries"')):  # both paths
        msg = SimpleNamespace(topic=stage.clean_topic, partition=0, offset=len(applied),
                              key=b"jfb_square",
                              headers=[(ORIGIN_HEADER, f"0:{len(applied)}".encode())])
        asyncio.run(stage.step([SimpleNamespace(message=msg, value=value)]))
    assert [out.dead for out in applied] == [[], []]
    assert stage.counts["in"] == 2 and stage.counts["errors"] == 0
