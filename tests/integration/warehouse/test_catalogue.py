"""Every query of docs/analyst-queries.md runs against the real engine on generated data, and
the key ones give the answers the raw rows imply."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.streams.records import AlertEvent, AlertEventKind, AlertState, DeadLetter
from cityops.warehouse.catalog import list_objects, load_catalogue
from cityops.warehouse.embedded import EmbeddedWarehouse
from cityops.warehouse.rows import record_row
from tests.integration.warehouse.conftest import night_totals

pytestmark = pytest.mark.integration

CATALOGUE = Path(__file__).resolve().parents[3] / "docs" / "analyst-queries.md"
QUERIES = load_catalogue(CATALOGUE)


def _alerts() -> list[AlertEvent]:
    t0 = datetime(2026, 2, 14, 12, 30, tzinfo=UTC)
    events = []
    for n, (rule, subject) in enumerate([("crowd_density", "jfb_square"),
                                         ("carpark_full", "cp_wfc"), ("aqi", "aq_jiefangbei")]):
        steps = [(AlertEventKind.FIRED, AlertState.ACTIVE_UNACK, 0),
                 (AlertEventKind.ACKNOWLEDGED, AlertState.ACTIVE_ACK, 90 + n * 30),
                 (AlertEventKind.CLEARED, AlertState.CLEARED_ACK, 900)]
        for seq, (kind, state, after) in enumerate(steps[: 3 - (n == 2)]):
            events.append(AlertEvent(
                alert_id=f"al-{n}", rule_id=rule, rule_version="1", subject=subject, kind=kind,
                state=state, severity="major", event_time=t0 + timedelta(seconds=after),
                emitted_at=t0 + timedelta(seconds=after + 1), seq=seq,
                actor="duty-officer" if kind is AlertEventKind.ACKNOWLEDGED else None))
    return events


@pytest.fixture(scope="module")
def wh(seeded_wh: EmbeddedWarehouse) -> Iterator[EmbeddedWarehouse]:
    rows = [record_row(a)[1] for a in _alerts()]
    seeded_wh.insert("alerts", rows)
    letters = [DeadLetter.from_bytes(f"bad {i}".encode(), feed="parking",
                                     reason="bad_json" if i % 2 else "over_capacity",
                                     detail="x", source_topic="cityops.raw.parking",
                                     source_partition=0, source_offset=i,
                                     received_at=datetime(2026, 2, 1, tzinfo=UTC))
               for i in range(5)]
    seeded_wh.insert("dead_letters", [record_row(d)[1] for d in letters])
    yield seeded_wh


def test_catalogue_has_the_required_questions() -> None:
    assert len(QUERIES) >= 10
    titles = " ".join(q.title.lower() for q in QUERIES)
    for words in ("zone is the busiest", "daytime", "holiday", "rain", "fill first",
                  "reach incidents", "10,000 visitors"):
        assert words in titles, words


@pytest.mark.parametrize("query", QUERIES, ids=[q.id for q in QUERIES])
def test_catalogue_query_runs(wh: EmbeddedWarehouse, query) -> None:
    df = wh.analyst_df(query.sql, readonly=True, max_rows=100_000)
    assert len(df) > 0, f"{query.id} returned no rows"
    assert not df.columns.duplicated().any()


def _by_id(qid: str):
    return next(q for q in QUERIES if q.id == qid)


def test_busiest_zone_per_night_matches_raw(wh: EmbeddedWarehouse, seeded: dict) -> None:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Shanghai")
    totals = night_totals(seeded["footfall_observed"], tz)
    df = wh.analyst_df(_by_id("Q1").sql)
    for rec in df.itertuples():
        night = rec.night_date.date() if hasattr(rec.night_date, "date") else rec.night_date
        best = max(v for (d, _z), v in totals.items() if d == night)
        assert rec.peak_entries == best
        assert totals[(night, rec.busiest_zone)] == best


def test_response_and_rates_are_sane(wh: EmbeddedWarehouse) -> None:
    q6 = wh.analyst_df(_by_id("Q6").sql)
    assert (q6["median_response_min"].dropna() > 0).all()
    q7 = wh.analyst_df(_by_id("Q7").sql)
    assert q7["visitors"].sum() > 0 and q7["per_10k_visitors"].max() > 0
    q5 = wh.analyst_df(_by_id("Q5").sql)
    assert (q5["mean_minutes_after_17h"] >= 0).all()
    q12 = wh.analyst_df(_by_id("Q12").sql)
    assert set(q12["rule_id"]) == {"crowd_density", "carpark_full", "aqi"}
    assert int(q12["still_active"].sum()) == 1
    q13 = wh.analyst_df(_by_id("Q13").sql)
    assert int(q13["records"].sum()) == 5


def test_tables_are_listed_with_descriptions(wh: EmbeddedWarehouse) -> None:
    objects = list_objects(wh)
    names = {o.name for o in objects}
    assert {"night_footfall", "footfall_observed", "alert_lifecycle", "dim_zones"} <= names
    assert not any(n.startswith(("agg_", "mv_", "schema_")) for n in names)
    assert all(o.comment for o in objects)
    everything = {o.name for o in list_objects(wh, include_internal=True)}
    assert "agg_footfall_zone_1m" in everything and "mv_air_1h" in everything


def test_registry_fixture_matches(registry: Registry, settings: Settings) -> None:
    assert registry.zones and settings.timezone == "Asia/Shanghai"
