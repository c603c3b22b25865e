"""A step whose outputs or state were not delivered stops the worker before its batch is
acknowledged (exit for replay), in the validation, aggregation and alert-engine agents."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.streams import alerting
from cityops.streams.aggregation import AggregationStage
from cityops.streams.alerting import AlertWiring, observations_from
from cityops.streams.alerts.rules import load_rules
from cityops.streams.app import Topics, declare_topics, make_app
from cityops.streams.durable import EXIT_REPLAY
from cityops.streams.records import AirQualityIndex
from cityops.streams.validation import ValidationStage


@pytest.fixture
def app_topics(settings: Settings, tmp_path: Any) -> tuple[Any, Topics, Settings]:
    """A real (not started) Faust app with the worker's topics; nothing touches a broker."""
    s = settings.model_copy(update={"data_dir": tmp_path, "worker_batch_max": 10,
                                    "worker_batch_s": 0.1})
    app = make_app(s)
    return app, declare_topics(app, s), s


class Stopped(BaseException):
    """Stands in for os._exit: nothing after it runs."""


class Stream:
    """``take_events`` whose finalizer acknowledges the batch, as Faust's does."""

    def __init__(self, events: list[Any]) -> None:
        self.events = events
        self.acked = False

    async def take_events(self, n: int, within: float) -> Any:
        try:
            yield self.events
        finally:
            self.acked = True


def _events() -> list[Any]:
    msg = SimpleNamespace(topic="t", partition=0, offset=5, key=b"k", headers=[])
    return [SimpleNamespace(message=msg, value=b"{}")]


def _run_until_stopped(agent: Any, stream: Stream) -> list[tuple[str, bool]]:
    calls: list[tuple[str, bool]] = []

    def on_failure(name: str, events: list[Any]) -> None:
        calls.append((name, stream.acked))
        raise Stopped

    agent.__self__.on_failure = on_failure
    with pytest.raises(Stopped):
        asyncio.run(agent(stream))
    return calls


def _failing(*args: Any, **kwargs: Any) -> Any:
    async def fail(*a: Any, **k: Any) -> None:
        raise RuntimeError("broker gone")
    return fail()


def _deliver_with(stage: ValidationStage, delivery: Any) -> None:
    """Every record of the stage's next step hands over ``delivery()`` as its output."""
    def handle(raw: bytes, key: Any, origin: Any, ctx: Any, out: Any, received: Any) -> None:
        out.futures.append(delivery())

    stage.handle = handle  # type: ignore[method-assign]


def test_validation_step_whose_outputs_fail_stops_before_acknowledging(
        app_topics: Any, registry: Registry) -> None:
    app, topics, settings = app_topics
    st = ValidationStage("footfall", settings, registry, app, topics)

    _deliver_with(st, _failing)
    stream = Stream(_events())
    assert _run_until_stopped(st.agent, stream) == [("validate-footfall", False)]


def test_aggregation_step_failure_stops_before_acknowledging(
        app_topics: Any, registry: Registry) -> None:
    app, topics, settings = app_topics
    st = AggregationStage("footfall", settings, registry, app, topics)
    st.step = _failing  # type: ignore[method-assign]
    stream = Stream(_events())
    assert _run_until_stopped(st.agent, stream) == [("aggregate-footfall", False)]


def test_alert_engine_step_failure_stops_before_acknowledging(
        app_topics: Any, registry: Registry) -> None:
    app, topics, settings = app_topics
    w = AlertWiring(settings, registry, load_rules(None), app, topics.alerts)
    w.step = _failing  # type: ignore[method-assign]
    stream = Stream(_events())
    assert _run_until_stopped(w.agent, stream) == [("alerts-engine", False)]


def _hanging(*args: Any, **kwargs: Any) -> Any:
    """A delivery that never completes (a send stuck in the client: it never fails)."""
    async def hang(*a: Any, **k: Any) -> None:
        await asyncio.get_running_loop().create_future()
    return hang()


def _deadline(app_topics: Any) -> tuple[Any, Topics, Settings]:
    app, topics, settings = app_topics
    return app, topics, settings.model_copy(update={"worker_step_timeout_s": 0.2})


def test_validation_step_whose_delivery_hangs_stops_after_the_step_timeout(
        app_topics: Any, registry: Registry) -> None:
    app, topics, settings = _deadline(app_topics)
    st = ValidationStage("footfall", settings, registry, app, topics)

    _deliver_with(st, _hanging)
    stream = Stream(_events())
    assert _run_until_stopped(st.agent, stream) == [("validate-footfall", False)]


def test_aggregation_step_that_hangs_stops_after_the_step_timeout(
        app_topics: Any, registry: Registry) -> None:
    app, topics, settings = _deadline(app_topics)
    st = AggregationStage("footfall", settings, registry, app, topics)
    st.step = _hanging  # type: ignore[method-assign]
    stream = Stream(_events())
    assert _run_until_stopped(st.agent, stream) == [("aggregate-footfall", False)]


def test_alert_engine_step_that_hangs_stops_after_the_step_timeout(
        app_topics: Any, registry: Registry) -> None:
    app, topics, settings = _deadline(app_topics)
    w = AlertWiring(settings, registry, load_rules(None), app, topics.alerts)
    w.step = _hanging  # type: ignore[method-assign]
    stream = Stream(_events())
    assert _run_until_stopped(w.agent, stream) == [("alerts-engine", False)]


def test_stop_after_failed_step_exits_for_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)

    monkeypatch.setattr("os._exit", fake_exit)
    alerting.stop_after_failed_step("aggregate-air", _events())
    assert codes == [EXIT_REPLAY]


def test_aqi_observation_is_timed_at_the_triggering_sample() -> None:
    hour = datetime(2026, 5, 1, 4, 0, tzinfo=UTC)
    sample = datetime(2026, 5, 1, 4, 37, tzinfo=UTC)
    rec = AirQualityIndex(station_id="st1", hour_start=hour, averaging="1h", aqi=160,
                          emitted_at=sample)
    assert observations_from([rec], sample)[0]["ts"] == sample.timestamp()
    assert observations_from([rec])[0]["ts"] == hour.timestamp()  # no event: hour start


def test_undecodable_clean_record_is_dead_lettered_not_dropped(
        app_topics: Any, registry: Registry) -> None:
    app, topics, settings = app_topics
    st = AggregationStage("footfall", settings, registry, app, topics)
    published: list[Any] = []

    async def publish(out: Any) -> None:
        published.append(out)

    st.publish = publish  # type: ignore[method-assign]
    st.snaps[2] = {}  # the partition's state was read (empty): this step needs no broker
    msg = SimpleNamespace(topic="cityops.clean.footfall", partition=2, offset=77, key=b"z",
                          headers=[])
    asyncio.run(st.step([SimpleNamespace(message=msg, value=b'{"not": "an event"}')]))
    [out] = published
    [dead] = out.dead
    assert (dead.reason, dead.source_topic, dead.source_partition, dead.source_offset) == (
        "invalid", "cityops.clean.footfall", 2, 77)
    assert dead.raw == b'{"not": "an event"}'
    assert "not decodable" in dead.detail


def test_offset_gap_guard_stops_on_a_skip_but_not_on_a_partition_newly_assigned() -> None:
    from cityops.streams.durable import OffsetGapGuard

    gaps: list[tuple[str, int, int, int]] = []
    guard = OffsetGapGuard("validate-footfall", lambda *a: gaps.append(a))
    for off in (5, 6, 7, 3, 4):  # a seek back (a replay) only moves the expectation
        guard.check("t", 0, off)
    assert gaps == []
    guard.check("t", 0, 6)  # 5 was skipped: a gap
    assert gaps == [("t", 0, 4, 6)]
    guard.check("t", 1, 10)
    guard.forget({("t", 1)})  # another worker advanced partition 1 while it was away
    guard.check("t", 1, 500)
    guard.check("t", 0, 8)  # a kept partition is still guarded
    assert gaps == [("t", 0, 4, 6), ("t", 0, 6, 8)]
