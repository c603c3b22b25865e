"""The ``Aggregator`` protocol all four feeds follow, and the table of which feed uses what.

The aggregation stage knows only this protocol. State is held per *unit*, what one snapshot
in the feed's ``state-<feed>`` table holds: a zone / car park / station for the keyed feeds,
one clean partition (``@<partition>``) for incidents, whose lifecycle is tracked per
incident and whose counts are per zone, so their state is not split by the message key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from cityops.core.fast_contract import FastEvent
from cityops.core.feeds import Envelope
from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.streams.aggregators import (
    AirQualityAggregator,
    FootfallAggregator,
    IncidentAggregator,
    Outcome,
    ParkingAggregator,
)

#: resolved / cancelled incidents are dropped from the state this long (event time) later
INCIDENT_RETENTION = timedelta(hours=24)


class Aggregator(Protocol):
    """One feed's aggregation state, in units that are snapshotted one by one."""

    #: whether ``close_idle`` can close anything (the timer skips the feeds where it cannot)
    closes_idle: bool

    def unit(self, key: str, partition: int) -> str:
        """The unit a clean record with this message key, read from this partition, updates."""
        ...

    def add(self, unit: str, ev: Envelope | FastEvent, emitted_at: datetime) -> Outcome: ...

    def to_state(self, unit: str) -> dict[str, Any]: ...

    def from_state(self, unit: str, state: dict[str, Any]) -> None: ...

    def close_idle(self, idle_after_s: float, emitted_at: datetime
                   ) -> tuple[list[Any], set[str]]:
        """Close what went quiet for ``idle_after_s`` of event time: (records, units)."""
        ...

    def forget(self, unit: str) -> None:
        """Drop the unit's state (its partition was revoked); ``from_state`` rebuilds it."""
        ...


class _Keyed:
    """A keyed domain aggregator (footfall, parking, air): the unit is the message key."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.closes_idle = hasattr(inner, "close_idle")

    def unit(self, key: str, partition: int) -> str:
        return key

    def add(self, unit: str, ev: Envelope | FastEvent, emitted_at: datetime) -> Outcome:
        return self.inner.add(ev, emitted_at)

    def to_state(self, unit: str) -> dict[str, Any]:
        return self.inner.to_state(unit)

    def from_state(self, unit: str, state: dict[str, Any]) -> None:
        if state:
            self.inner.from_state(unit, state)

    def close_idle(self, idle_after_s: float, emitted_at: datetime
                   ) -> tuple[list[Any], set[str]]:
        close = getattr(self.inner, "close_idle", None)
        return close(idle_after_s, emitted_at) if close is not None else ([], set())

    def forget(self, unit: str) -> None:
        self.inner.forget(unit)


class IncidentsByPartition:
    """Incidents: one ``IncidentAggregator`` per clean partition (unit ``@<partition>``)."""

    closes_idle = False

    def __init__(self, settings: Settings) -> None:
        self.tz = settings.tz
        self.expire_after_s = settings.incident_expire_after_s
        self.parts: dict[str, IncidentAggregator] = {}

    def unit(self, key: str, partition: int) -> str:
        return f"@{partition}"

    def _agg(self, unit: str) -> IncidentAggregator:
        agg = self.parts.get(unit)
        if agg is None:
            agg = self.parts[unit] = IncidentAggregator(tz=self.tz)
        return agg

    def add(self, unit: str, ev: Envelope | FastEvent, emitted_at: datetime) -> Outcome:
        agg = self._agg(unit)
        # bounded state: incidents left open with no word for CITYOPS_INCIDENT_EXPIRE_AFTER_S
        # close first (the event's own record then counts the zone's open incidents without
        # them), and incidents closed a day (of event time) before this one are forgotten
        expired = (agg.expire_quiet(ev.event_time, self.expire_after_s, emitted_at,
                                    keep=ev.incident_id)  # type: ignore[union-attr]
                   if self.expire_after_s else [])
        outcome = agg.add(ev, emitted_at)  # type: ignore[arg-type]
        agg.evict_closed_before(ev.event_time - INCIDENT_RETENTION)
        if expired:  # published even when the event itself is refused
            outcome.records = [*expired, *outcome.records]
        return outcome

    def to_state(self, unit: str) -> dict[str, Any]:
        return self._agg(unit).to_state()

    def from_state(self, unit: str, state: dict[str, Any]) -> None:
        agg = self.parts[unit] = IncidentAggregator(tz=self.tz)
        agg.from_state(state)

    def close_idle(self, idle_after_s: float, emitted_at: datetime
                   ) -> tuple[list[Any], set[str]]:
        return [], set()

    def forget(self, unit: str) -> None:
        self.parts.pop(unit, None)


def _footfall(settings: Settings, registry: Registry) -> Aggregator:
    return _Keyed(FootfallAggregator(
        registry, settings.stream_allowed_lateness_s,
        presence_half_life_s=settings.footfall_presence_half_life_s,
        reset_hour_local=settings.footfall_presence_reset_hour, tz=settings.tz,
        # per-counter watermarks on the processing clock (streams.windows): a counter is idle
        # after its intervals, and never sooner than a zone's windows may stay open
        clock=time.time, idle_intervals=settings.stream_source_idle_intervals,
        min_idle_s=settings.stream_allowed_lateness_s + settings.stream_idle_close_s,
        # a step publishes a window's newest revision only: the others are never built
        pending_records=True))


AGGREGATORS: dict[str, Callable[[Settings, Registry], Aggregator]] = {
    "footfall": _footfall,
    "parking": lambda settings, _registry: _Keyed(ParkingAggregator(tz=settings.tz)),
    "air": lambda settings, _registry: _Keyed(AirQualityAggregator(tz=settings.tz,
                                                                   pending_records=True)),
    "incidents": lambda settings, _registry: IncidentsByPartition(settings),
}


def aggregator_for(feed: str, settings: Settings, registry: Registry) -> Aggregator:
    """The aggregator of ``feed`` (one of ``core.settings.FEEDS``)."""
    return AGGREGATORS[feed](settings, registry)
