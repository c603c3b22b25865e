"""Domain aggregators of the four feeds: pure state machines, no Faust, no Kafka.

Each takes validated feed events (``cityops.core.feeds``) and returns the derived records of
``cityops.streams.records``; each keeps a JSON-able state per key (``to_state``/``from_state``)
so the Faust wiring can persist it in a changelog table.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cityops.core.fast_contract import FastAir, FastFootfall, FastIncident, FastParking
from cityops.core.feeds import (
    INCIDENT_ORDER,
    AirQualityObserved,
    FootfallObserved,
    IncidentReported,
    IncidentStatus,
    ParkingObserved,
)
from cityops.core.intervals import MINUTE_MS, interval_ms, spread_aligned
from cityops.core.registry import Registry
from cityops.core.settings import DEFAULT_TIMEZONE
from cityops.streams.aqi import compute_aqi
from cityops.streams.records import (
    AirQualityIndex,
    FootfallWindow,
    IncidentStats,
    ParkingState,
    Pending,
)
from cityops.streams.windows import (
    HoppingWindow,
    Result,
    TumblingWindow,
    WindowedAggregator,
    WindowSnapshot,
)

#: the default zone of the aggregators (the worker passes ``Settings.tz``)
SHANGHAI = ZoneInfo(DEFAULT_TIMEZONE)


def _dt(ts_s: float, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ts_s, tz)


class Outcome(Result):
    """Result of one event: records to publish, or why nothing was (late / ignored).

    One per event: a plain class, as ``windows.Result`` says. ``watermark_s`` is the unit's
    watermark after the event (POSIX s), told as a time in ``tz`` only when asked (a late
    event's record): an aware datetime per accepted report was 6 % of the footfall fold,
    and nothing reads it.
    """

    FIELDS = ("accepted", "records", "lateness_s", "violations", "watermark_s", "tz")

    def __init__(self, accepted: bool, records: list[Any] | None = None,
                 lateness_s: float = 0.0, violations: list[str] | None = None,
                 watermark_s: float | None = None, tz: ZoneInfo | None = None) -> None:
        self.accepted = accepted
        self.records: list[Any] = [] if records is None else records
        self.lateness_s = lateness_s  # > 0: late beyond the allowed lateness → late topic
        #: e.g. incident lifecycle problems
        self.violations: list[str] = [] if violations is None else violations
        self.watermark_s = watermark_s
        self.tz = tz

    @property
    def watermark(self) -> datetime | None:
        """The watermark as an aware time (in ``tz``), or None when the unit has none."""
        if self.watermark_s is None:
            return None
        return _dt(self.watermark_s, self.tz or SHANGHAI)


# ============================================================================================
# footfall
# ============================================================================================

FOOTFALL_WINDOWS: dict[str, TumblingWindow | HoppingWindow] = {
    "tumbling_1m": TumblingWindow(60),
    "hopping_5m": HoppingWindow(300, 60),
}


class FootfallAcc:
    """One footfall window's counts: entries, exits, reports (``events``), the presence
    estimate after its latest report by event time (``presence_ts``) and the last report's
    id (several minute pieces of one report count one event).

    Never changed once made (``_ff_fold`` makes a new one: published snapshots hold the old).
    A class, not a dict: compiled, a fold reads and makes it without a lookup by name; its
    snapshot (``to_state``) is the dict the state log always held.
    """

    def __init__(self, entries: int, exits: int, events: int, presence: float,
                 presence_ts: float | None, report: str | None) -> None:
        self.entries = entries
        self.exits = exits
        self.events = events
        self.presence = presence
        self.presence_ts = presence_ts
        self.report = report

    def to_state(self) -> dict[str, Any]:
        # made once per window revision: the window keeps its snapshot until it changes
        return {"entries": self.entries, "exits": self.exits, "events": self.events,
                "presence": self.presence, "presence_ts": self.presence_ts,
                "report": self.report}

    @staticmethod
    def from_state(state: dict[str, Any]) -> FootfallAcc:
        ts = state.get("presence_ts")
        return FootfallAcc(int(state.get("entries", 0)), int(state.get("exits", 0)),
                           int(state.get("events", 0)), float(state.get("presence", 0.0)),
                           None if ts is None else float(ts), state.get("report"))


def _ff_zero() -> FootfallAcc:
    return FootfallAcc(0, 0, 0, 0.0, None, None)


def _ff_dump(acc: FootfallAcc) -> dict[str, Any]:
    return acc.to_state()


#: one report's part for one minute: entries, exits, presence after it, the report's id
FootfallPiece = tuple[int, int, float, str]


def _ff_fold(acc: FootfallAcc, value: FootfallPiece, ts: float) -> FootfallAcc:
    entries, exits, presence, report = value
    seen_ts = acc.presence_ts
    newer = seen_ts is None or ts >= seen_ts
    return FootfallAcc(acc.entries + entries, acc.exits + exits,
                       acc.events + (acc.report != report),
                       presence if newer else acc.presence, ts if newer else seen_ts, report)


#: local days whose reset boundary ``FootfallAggregator`` remembers
RESET_SPANS_KEPT = 8
# looked up once: a pydantic model class's attributes are read through its metaclass's
# ``__getattr__`` hook, and ``_emit`` read these three for every window revision
_OBSERVED_WINDOW = FootfallWindow.OBSERVED_WINDOW
_window_id = FootfallWindow.id_of
_window_observes = FootfallWindow.observes


class FootfallAggregator:
    """Entries/exits per zone in 1-min tumbling and 5-min/1-min hopping windows, plus presence.

    Net presence is a running estimate per zone: ``max(0, p·2^(−Δt/half_life) + entries −
    exits)``. Counters miss people (occlusion, side exits), so a pure running sum drifts
    without bound; the exponential decay bounds a constant bias b persons/s to b·half_life/ln2,
    and a daily reset at ``reset_hour_local`` (05:00 by default: after the night economy's
    18:00–02:00, when the street is near empty) returns the estimate to zero. The decay also
    slowly under-estimates a genuinely steady crowd; the half-life (6 h by default) is long
    against a typical visit. A window's ``net_presence`` is the estimate after its latest
    event (by event time).

    Counts go where the report's interval ``[event_time − interval_s, event_time)`` lies: split
    into whole-number minute pieces (``cityops.core.intervals``, the same arithmetic as the
    warehouse rollups), each folded into the windows containing it. A zone's lateness is
    widened by its slowest counter's interval (registry cadence, or a longer ``interval_s``
    seen), so an in-order feed of hourly counters is never late.

    With a processing ``clock`` (the worker passes ``time.time``) a zone's watermark is the
    minimum over its counters (``WindowedAggregator``'s per-source watermarks): the registry's
    counters of the zone are expected, and a counter silent for ``idle_intervals`` of its own
    cadence (at least ``min_idle_s``) on that clock stops holding the zone back. A backlog
    read at any speed then gives the windows a real-time stream gives.
    """

    def __init__(self, registry: Registry, allowed_lateness_s: float,
                 presence_half_life_s: float = 6 * 3600, reset_hour_local: int | None = 5,
                 tz: ZoneInfo = SHANGHAI, clock: Callable[[], float] | None = None,
                 idle_intervals: float = 4.0, min_idle_s: float = 0.0,
                 pending_records: bool = False) -> None:
        self.registry = registry
        #: windows as ``records.Pending`` revisions, built only when published (the worker)
        self.pending_records = pending_records
        self._isos: dict[float, str] = {}  # window bound (s) → its time's ISO text, reused
        self.tz = tz
        self.half_life_s = presence_half_life_s
        self.reset_hour_local = reset_hour_local
        self.windows: dict[str, WindowedAggregator[str, FootfallAcc, FootfallPiece]]
        self.windows = {name: WindowedAggregator(a, allowed_lateness_s, _ff_zero, _ff_fold,
                                                 _ff_dump, FootfallAcc.from_state)
                        for name, a in FOOTFALL_WINDOWS.items()}
        self._presence: dict[str, dict[str, Any]] = {}
        #: the local days whose reset boundary is known, ``(day start, next day start)``, the
        #: latest used first (``_last_reset_s``)
        self._reset_spans: list[tuple[float, float]] = []
        self._times: dict[float, datetime] = {}  # window bound (s) → aware datetime, reused
        self._zone_span_s: dict[str, float] = {}
        self._areas: dict[str, float] = {}  # zone → its walkable area (m²), from the registry
        for counter in registry.counters.values():
            self._zone_span_s[counter.zone_id] = max(
                self._zone_span_s.get(counter.zone_id, 0.0), float(counter.cadence_s))
        self.clock = clock
        if clock is not None:
            for agg in self.windows.values():
                agg.configure_sources(idle_intervals, min_idle_s)
                for zone_id, counters in registry.counters_by_zone.items():
                    agg.expect(zone_id, {c.id: float(c.cadence_s) for c in counters})

    def _last_reset_s(self, ts: float) -> float | None:
        """The start of ``ts``'s local day (its last daily reset), remembered for the last
        ``RESET_SPANS_KEPT`` days: zones read from different clean partitions can be days
        apart while a backlog drains, and with one remembered day each report of a zone on
        the other day worked it out again (3 % of the aggregation worker's CPU in a drain)."""
        if self.reset_hour_local is None:
            return None
        spans = self._reset_spans
        for i in range(len(spans)):
            lo, hi = spans[i]
            if lo <= ts < hi:
                if i:  # the latest used first
                    spans.insert(0, spans.pop(i))
                return lo
        local = _dt(ts, self.tz)
        boundary = local.replace(hour=self.reset_hour_local, minute=0, second=0, microsecond=0)
        if boundary > local:
            boundary -= timedelta(days=1)
        boundary_s = boundary.timestamp()
        # valid from this boundary until the next one (computed, not assumed 24 h: DST)
        nxt = (boundary + timedelta(days=1)).replace(hour=self.reset_hour_local).timestamp()
        spans.insert(0, (boundary_s, nxt))
        del spans[RESET_SPANS_KEPT:]
        return boundary_s

    def presence(self, zone_id: str) -> float:
        st = self._presence.get(zone_id)
        return 0.0 if st is None else float(st["value"])

    def _update_presence(self, zone_id: str, ts: float, entries: int, exits: int) -> float:
        st = self._presence.setdefault(zone_id, {"value": 0.0, "ts": None})
        if st["ts"] is not None:
            reset = self._last_reset_s(max(ts, st["ts"]))
            if reset is not None and ts < reset:
                return float(st["value"])  # a report from before the daily reset: windows only
            if reset is not None and st["ts"] < reset <= ts:
                st["value"], st["ts"] = 0.0, reset
            if ts > st["ts"]:
                if self.half_life_s > 0:
                    st["value"] *= 0.5 ** ((ts - st["ts"]) / self.half_life_s)
                st["ts"] = ts
        else:
            st["ts"] = ts
        st["value"] = max(0.0, st["value"] + entries - exits)
        return float(st["value"])

    def _time(self, ts: float) -> datetime:
        dt = self._times.get(ts)
        if dt is None:
            if len(self._times) > 100_000:  # a long backlog: start over rather than grow
                self._times.clear()
            dt = self._times[ts] = _dt(ts, self.tz)
        return dt

    def _iso(self, ts: float) -> str:
        text = self._isos.get(ts)
        if text is None:
            if len(self._isos) > 100_000:
                self._isos.clear()
            text = self._isos[ts] = self._time(ts).isoformat()
        return text

    def _presence_density(self, snap: WindowSnapshot) -> tuple[float, float]:
        presence = round(snap.acc.presence, 3)
        area = self._areas.get(snap.key)
        if area is None:  # the registry's zone (a pydantic model) read once per zone
            area = self._areas[snap.key] = float(self.registry.zones[snap.key].area_m2)
        return presence, round(presence / area, 6)

    def _record(self, name: str, snap: WindowSnapshot,
                emitted_at: datetime) -> FootfallWindow:
        acc = snap.acc
        presence, density = self._presence_density(snap)
        return FootfallWindow.trusted(  # counts of validated reports: see ``trusted``
            zone_id=snap.key, window=name,
            window_start=self._time(snap.start_s), window_end=self._time(snap.end_s),
            entries=acc.entries, exits=acc.exits, events=acc.events,
            net_presence=presence, density_ppm2=density,
            revision=snap.revision, emitted_at=emitted_at)

    def _emit(self, name: str, snap: WindowSnapshot,
              emitted_at: datetime) -> FootfallWindow | Pending:
        """The window's record, or with ``pending_records`` its ``Pending`` revision: the
        same id (``FootfallWindow.record_id``) and density observation, the model built from
        this snapshot (its accumulator is replaced, never changed, by later events)."""
        if not self.pending_records:
            return self._record(name, snap, emitted_at)
        observes = None if name != _OBSERVED_WINDOW else _window_observes(
            snap.key, name, self._presence_density(snap)[1], snap.end_s)
        return Pending(FootfallWindow, _window_id(snap.key, name, self._iso(snap.start_s)),
                       snap.revision, lambda: self._record(name, snap, emitted_at), observes)

    def add(self, ev: FootfallObserved | FastFootfall, emitted_at: datetime) -> Outcome:
        """Fold one counter report; windows to (re-)publish, or late (→ late topic)."""
        ts = ev.event_time.timestamp()
        zone = ev.zone_id
        if zone not in self.registry.zones:
            raise KeyError(f"unknown zone {zone!r}")
        span = max(self._zone_span_s.get(zone, 0.0), float(ev.interval_s))
        for agg in self.windows.values():
            agg.note_span(zone, span)
        start_ms, end_ms = interval_ms(round(ts * 1000), ev.interval_s)
        now_s = None if self.clock is None else self.clock()
        counter = self.registry.counters.get(ev.source)
        # the per-source arguments of ``add``, named at each call (a ``**`` mapping made the
        # compiled call go through the generic wrapper, which parses it)
        source = None if now_s is None else ev.source
        cadence_s = float(counter.cadence_s if counter is not None else ev.interval_s)
        minute = self.windows["tumbling_1m"]
        # the others move on in their own ``add`` (at the same now_s); ``advance`` returns
        # the watermark it leaves
        wm = minute.watermark(zone) if now_s is None else minute.advance(zone, now_s)
        own = None if now_s is None else minute.source_mark(zone, ev.source)
        if own is not None and (wm is None or own > wm):
            wm = own  # far behind its own counter's newest report: truly late
        if wm is not None and start_ms / 1000 < wm:
            nothing: FootfallPiece = (0, 0, 0.0, ev.event_id)
            for agg in self.windows.values():  # counts the late event per aggregator
                agg.add(zone, ts, nothing, [(start_ms / 1000, nothing)], source=source,
                        now_s=now_s, cadence_s=cadence_s, start_s=start_ms / 1000)
            return Outcome(False, lateness_s=wm - start_ms / 1000, watermark_s=wm, tz=self.tz)
        presence = self._update_presence(zone, ts, ev.entries, ev.exits)
        ins = spread_aligned(ev.entries, start_ms, end_ms, MINUTE_MS)
        outs = spread_aligned(ev.exits, start_ms, end_ms, MINUTE_MS)
        pieces = [(b / 1000, (e, x, presence, ev.event_id))
                  for (b, e), (_, x) in zip(ins, outs, strict=True)]
        records: list[FootfallWindow | Pending] = []
        new_wm = None
        for name, agg in self.windows.items():
            # late or not as the check above: by the report's start, not its first minute's
            res = agg.add(zone, ts, pieces[-1][1], pieces, source=source, now_s=now_s,
                          cadence_s=cadence_s, start_s=start_ms / 1000)
            for snap in res.emit:
                records.append(self._emit(name, snap, emitted_at))
            if agg is minute:  # the watermark after the event (a refusal's includes its own)
                new_wm = res.watermark_s if res.accepted else agg.watermark(zone)
        return Outcome(True, records, watermark_s=new_wm, tz=self.tz)

    def close_all_until(self, watermark: datetime, emitted_at: datetime) -> list[FootfallWindow]:
        """Close windows of idle zones (wall-clock timer); returns never-published ones."""
        out: list[FootfallWindow] = []
        for name, agg in self.windows.items():
            for snap in agg.close_all_until(watermark.timestamp()):
                if not snap.emitted:
                    out.append(self._record(name, snap, emitted_at))
        return out

    def close_idle(self, idle_after_s: float, emitted_at: datetime
                   ) -> tuple[list[FootfallWindow], set[str]]:
        """Close windows of zones idle for ``idle_after_s`` of the feed's event time (see
        ``WindowedAggregator.close_idle``); returns never-published windows and the zones
        whose state changed (closed a window)."""
        out: list[FootfallWindow] = []
        zones: set[str] = set()
        now_s = None if self.clock is None else self.clock()
        for name, agg in self.windows.items():
            for zone, snaps in agg.close_idle(idle_after_s, now_s).items():
                zones.add(zone)
                out.extend(self._record(name, s, emitted_at) for s in snaps if not s.emitted)
        return out, zones

    def to_state(self, zone_id: str) -> dict[str, Any]:
        return {"windows": {n: a.to_state(zone_id) for n, a in self.windows.items()},
                "presence": dict(self._presence.get(zone_id, {"value": 0.0, "ts": None}))}

    def forget(self, zone_id: str) -> None:
        for agg in self.windows.values():
            agg.forget(zone_id)
        self._presence.pop(zone_id, None)

    def from_state(self, zone_id: str, state: dict[str, Any]) -> None:
        for n, a in self.windows.items():
            a.from_state(zone_id, state.get("windows", {}).get(n, {}))
        self._presence[zone_id] = dict(state.get("presence", {"value": 0.0, "ts": None}))


# ============================================================================================
# parking
# ============================================================================================


def least_squares_slope(points: list[tuple[float, float]]) -> float | None:
    """Slope of y over x by ordinary least squares; None with < 2 distinct x.

    Two loops over the points instead of four generator sums (compiled, a generator is an
    object and a call per item): the same additions in the same order, so the same float.
    """
    n = len(points)
    if n < 2:
        return None
    sx = 0.0
    sy = 0.0
    for x, y in points:
        sx += x
        sy += y
    mx = sx / n
    my = sy / n
    sxx = 0.0
    sxy = 0.0
    for x, y in points:
        dx = x - mx
        sxx += dx ** 2
        sxy += dx * (y - my)
    if sxx == 0:
        return None
    return sxy / sxx


class ParkingAggregator:
    """Occupancy, trend (spaces/min, least squares over the last ``trend_window_s``) and
    minutes to full per car park. A short regression smooths the ±few-car noise of barrier
    counters that a last-two-points difference would turn into wild ETAs."""

    def __init__(self, trend_window_s: float = 600.0, tz: ZoneInfo = SHANGHAI) -> None:
        self.trend_window_s = trend_window_s
        self.tz = tz
        self._state: dict[str, dict[str, Any]] = {}

    def add(self, ev: ParkingObserved | FastParking, emitted_at: datetime) -> Outcome:
        ts = ev.event_time.timestamp()
        st = self._state.setdefault(ev.carpark_id, {"points": []})
        points: list[list[float]] = st["points"]
        if points and ts <= points[-1][0]:  # out of order or again: merged and sorted
            points = [p for p in points if p[0] != ts]
            points.append([ts, float(ev.occupied)])
            points.sort()
        else:  # the newest point, as a car park reports: appended, already in order
            points.append([ts, float(ev.occupied)])
        newest = points[-1][0]
        oldest = newest - self.trend_window_s
        if points[0][0] < oldest:
            points = [p for p in points if p[0] >= oldest]
        st["points"] = points
        if ts < oldest:
            return Outcome(False, lateness_s=oldest - ts)
        # the regression window ends at this point; it starts at or before ``oldest``, so
        # every point kept up to this one is in it (all of them for the newest)
        if ts < newest:
            window = [(p[0] / 60.0, p[1]) for p in points if p[0] <= ts]
        else:
            window = [(p[0] / 60.0, p[1]) for p in points]
        slope = least_squares_slope(window)
        trend = 0.0 if slope is None else round(slope, 4)
        free = ev.capacity - ev.occupied
        if free <= 0:
            minutes_to_full: float | None = 0.0
        elif trend > 0:
            minutes_to_full = round(free / trend, 2)
        else:
            minutes_to_full = None
        rec = ParkingState.trusted(  # of a validated observation: see ``trusted``
            carpark_id=ev.carpark_id, event_time=ev.event_time, capacity=ev.capacity,
            occupied=ev.occupied, occupancy_rate=round(ev.occupied / ev.capacity, 6),
            trend_per_min=float(trend), minutes_to_full=minutes_to_full,
            emitted_at=emitted_at)
        return Outcome(True, [rec])

    def to_state(self, carpark_id: str) -> dict[str, Any]:
        st = self._state.get(carpark_id, {"points": []})
        return {"points": [list(p) for p in st["points"]]}

    def forget(self, carpark_id: str) -> None:
        self._state.pop(carpark_id, None)

    def from_state(self, carpark_id: str, state: dict[str, Any]) -> None:
        self._state[carpark_id] = {"points": [list(p) for p in state.get("points", [])]}


# ============================================================================================
# air quality
# ============================================================================================

#: feed field → short pollutant name used in hourly buckets
AIR_FIELDS: dict[str, str] = {
    "pm25_ugm3": "pm25", "pm10_ugm3": "pm10", "o3_ugm3": "o3", "no2_ugm3": "no2",
    "so2_ugm3": "so2", "co_mgm3": "co",
}
#: GB 3095-2012 §8 data validity: a 24-h mean needs ≥ 20 hourly values, an 8-h mean ≥ 6.
MIN_HOURS_24H = 20
MIN_HOURS_8H = 6
HOUR_S = 3600
#: the pollutants of the daily index's 24-h means (O3 has its daily 1-h and 8-h maxima)
DAILY_POLLUTANTS = ("pm25", "pm10", "no2", "so2", "co")


def _sum_over(series: dict[int, float], hours: range) -> tuple[float, int]:
    """(sum, count) of the hourly means ``series`` holds for ``hours``, added in hour
    order from 0.0, one after another: a sum of the hours before one hour plus that hour's
    mean is then the same float as the sum over all of them."""
    total, n = 0.0, 0
    for h in hours:
        v = series.get(h)
        if v is not None:
            total += v
            n += 1
    return total, n


def _max_with(prior: float | None, now: float | None) -> float | None:
    """The larger of two optional values, or the one given."""
    if prior is None:
        return now
    return prior if now is None or prior >= now else now


@dataclass(slots=True)
class _Before:
    """What the indexes of one hour of a station read of the hours before it. A sample
    changes only its own hour's means, so this holds while the samples stay in that hour."""

    hour: int  # hour index (epoch hours)
    sums24: dict[str, tuple[float, int]]  # pollutant → (sum, count) over the 23 hours before
    o3_sum8: tuple[float, int]  # O3 (sum, count) over the 7 hours before
    o3_max1: tuple[float | None, int]  # O3: largest hourly mean of the 23 hours before, count
    o3_max8: float | None  # largest valid 8-h O3 mean ending in one of the 23 hours before
    n_hours: int  # hours with samples among the 23 before


class AirQualityAggregator:
    """Hourly means per station, 8-h / 24-h moving averages, and the HJ 633-2012 AQI.

    A sample covers ``[event_time − averaging_s, event_time)`` (national stations publish
    an hour's mean at its end, 时间点 14:00 = 13:00–14:00) and is attributed to the hour of
    its midpoint, weighted by ``averaging_s``. Samples averaging over more than an hour are
    not used. Each sample re-publishes its hour (``averaging="1h"``, revision + 1), and, when
    at least one pollutant has 20 hourly values in the trailing 24 h, the rolling daily index
    for the same hour (``averaging="24h"``: 24-h means, O3 max 1-h and max 8-h). The hourly
    mean itself is provisional until the hour ends: ``samples`` says how many it holds.
    """

    def __init__(self, tz: ZoneInfo = SHANGHAI, retention_h: int = 32,
                 pending_records: bool = False) -> None:
        self.tz = tz
        self.retention_h = max(retention_h, 32)  # 24 h + 8 h for the daily max 8-h mean
        #: indexes as ``records.Pending`` revisions, built only when published (the worker)
        self.pending_records = pending_records
        self._state: dict[str, dict[str, Any]] = {}
        #: station → pollutant → hour index → hourly mean: derived from ``_state`` and kept
        #: beside it, so a sample recomputes its own hour's means, not the 32 hours'
        self._series: dict[str, dict[str, dict[int, float]]] = {}
        #: station → what its newest-sampled hour's indexes read of the hours before it
        #: (``_Before``), kept while its samples stay in that hour
        self._before: dict[str, _Before] = {}

    @staticmethod
    def _put_means(series: dict[str, dict[int, float]], hour: int, h: dict[str, Any]) -> None:
        weights = h["weights"]
        for p, total in h["sums"].items():
            if weights[p] > 0:
                series.setdefault(p, {})[hour // HOUR_S] = total / weights[p]

    def _series_of(self, station: str) -> dict[str, dict[int, float]]:
        series = self._series.get(station)
        if series is None:
            series = self._series[station] = {}
            for hk, h in self._state[station]["hours"].items():
                self._put_means(series, int(hk), h)
        return series

    @staticmethod
    def _mean_over(series: dict[int, float], hours: range, min_n: int) -> float | None:
        """Mean of one pollutant's hourly means (``series``: hour index → mean) over
        ``hours``, or None with fewer than ``min_n`` of them."""
        total, n = _sum_over(series, hours)
        return total / n if n >= min_n else None

    def add(self, ev: AirQualityObserved | FastAir, emitted_at: datetime) -> Outcome:
        averaging_s = ev.averaging_s
        assert averaging_s is not None  # a fast struct's default is filled in when decoded
        if averaging_s > HOUR_S:
            return Outcome(False, violations=["averaging_s above one hour: not used"])
        end_s = ev.event_time.timestamp()
        hour = math.floor((end_s - averaging_s / 2) / HOUR_S) * HOUR_S
        station = ev.station_id
        st = self._state.setdefault(station, {"hours": {}, "newest": None})
        if st["newest"] is not None and hour <= st["newest"] - self.retention_h * HOUR_S:
            return Outcome(False, lateness_s=st["newest"] - hour)
        series = self._series_of(station)
        st["newest"] = hour if st["newest"] is None else max(st["newest"], hour)
        hours = st["hours"]
        hk = str(hour)
        h = hours.setdefault(hk, {"sums": {}, "weights": {}, "samples": 0, "rev": {}})
        for fld, short in AIR_FIELDS.items():
            v = getattr(ev, fld)
            if v is not None:
                h["sums"][short] = h["sums"].get(short, 0.0) + v * averaging_s
                h["weights"][short] = h["weights"].get(short, 0.0) + averaging_s
        h["samples"] += 1
        self._put_means(series, hour, h)
        cutoff = st["newest"] - self.retention_h * HOUR_S
        for old in [k for k in hours if int(k) <= cutoff]:
            del hours[old]
            for by_hour in series.values():
                by_hour.pop(int(old) // HOUR_S, None)
        return Outcome(True, self._records(station, hour, emitted_at, ev.event_time))

    def _before_of(self, station: str, hi: int) -> _Before:
        """What hour ``hi``'s indexes read of the hours before it, kept for the samples of
        the same hour that follow (a 1-minute station sends 60 an hour, and each used to
        read the 23 hours before again for its daily index). One hour per station is
        enough, and never stale: the hours change only in ``add``, which then asks for its
        own hour, so a sample in any other hour replaces what is kept, and old hours are
        evicted only by a sample in a new hour; a restore drops it."""
        before = self._before.get(station)
        if before is not None and before.hour == hi:
            return before
        series = self._series_of(station)
        hours = self._state[station]["hours"]
        none: dict[int, float] = {}
        o3 = series.get("o3", none)
        prior24 = range(hi - 23, hi)
        o3_prior = [o3[x] for x in prior24 if x in o3]
        eights = [self._mean_over(o3, range(e - 7, e + 1), MIN_HOURS_8H) for e in prior24]
        valid8 = [x for x in eights if x is not None]
        before = self._before[station] = _Before(
            hour=hi,
            sums24={p: _sum_over(series.get(p, none), prior24) for p in DAILY_POLLUTANTS},
            o3_sum8=_sum_over(o3, range(hi - 7, hi)),
            o3_max1=(max(o3_prior) if o3_prior else None, len(o3_prior)),
            o3_max8=max(valid8) if valid8 else None,
            n_hours=sum(1 for x in prior24 if str(x * HOUR_S) in hours))
        return before

    def _records(self, station: str, hour: int, emitted_at: datetime,
                 event_time: datetime) -> list[AirQualityIndex | Pending]:
        hours = self._state[station]["hours"]
        h = hours[str(hour)]
        series = self._series_of(station)
        hi = hour // HOUR_S
        cur = {p: by_hour[hi] for p, by_hour in series.items() if hi in by_hour}
        # the 8-h and 24-h means end with this hour: the sums of the hours before it (kept
        # while the samples stay in this hour), then this hour's mean added last, as a sum
        # over the hours in order adds it: the same floats as summing them all again
        before = self._before_of(station, hi)

        def mean_with(prior: tuple[float, int], now: float | None, min_n: int) -> float | None:
            total, n = prior
            if now is not None:
                total, n = total + now, n + 1
            return total / n if n >= min_n else None

        o3_now = cur.get("o3")
        o3_8h = mean_with(before.o3_sum8, o3_now, MIN_HOURS_8H)
        daily = {p: mean_with(before.sums24[p], cur.get(p), MIN_HOURS_24H)
                 for p in DAILY_POLLUTANTS}
        res = compute_aqi(pm25=cur.get("pm25"), pm10=cur.get("pm10"), o3_1h=o3_now,
                          no2=cur.get("no2"), so2=cur.get("so2"), co=cur.get("co"),
                          averaging="1h", so2_24h=daily["so2"])
        out = [self._index(station, hour, "1h", h, emitted_at, res, samples=h["samples"],
                           observed_at=event_time, pm25=cur.get("pm25"),
                           pm10=cur.get("pm10"), o3_1h=o3_now, o3_8h=o3_8h,
                           no2=cur.get("no2"), so2=cur.get("so2"), co=cur.get("co"))]
        o3_max_1h = _max_with(before.o3_max1[0], o3_now)
        if before.o3_max1[1] + (o3_now is not None) < MIN_HOURS_24H:
            o3_max_1h = None
        o3_max_8h = None
        if o3_max_1h is not None:
            o3_max_8h = _max_with(before.o3_max8, o3_8h)  # this hour's 8-h mean is o3_8h
        if any(v is not None for v in daily.values()) or o3_max_1h is not None:
            dres = compute_aqi(**daily, o3_1h=o3_max_1h, o3_8h=o3_max_8h, averaging="24h")
            out.append(self._index(station, hour, "24h", h, emitted_at, dres,
                                   samples=before.n_hours + 1,  # this hour is in ``hours``
                                   observed_at=None, o3_1h=o3_max_1h, o3_8h=o3_max_8h,
                                   **daily))
        return out

    def _index(self, station: str, hour: int, averaging: str, h: dict[str, Any],
               emitted_at: datetime, res: Any, *, samples: int,
               observed_at: datetime | None, **values: float | None,
               ) -> AirQualityIndex | Pending:
        """The index's next revision; with ``pending_records`` a ``Pending`` one, observed
        (the hourly AQI, for the alert rules) at ``observed_at``."""
        rev = h["rev"].get(averaging, -1) + 1
        h["rev"][averaging] = rev

        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 3)

        def make() -> AirQualityIndex:
            return AirQualityIndex(
                station_id=station, hour_start=_dt(hour, self.tz), averaging=averaging,
                pm25_ugm3=r(values.get("pm25")), pm10_ugm3=r(values.get("pm10")),
                o3_1h_ugm3=r(values.get("o3_1h")), o3_8h_ugm3=r(values.get("o3_8h")),
                no2_ugm3=r(values.get("no2")), so2_ugm3=r(values.get("so2")),
                co_mgm3=r(values.get("co")), iaqi=dict(res.iaqi), aqi=res.aqi,
                primary_pollutants=list(res.primary_pollutants), category=res.category_zh,
                samples=samples, revision=rev, emitted_at=emitted_at)

        if not self.pending_records:
            return make()
        observes = None
        if observed_at is not None and res.aqi is not None:
            observes = ("aqi", station, float(res.aqi), observed_at.timestamp())
        return Pending(AirQualityIndex, AirQualityIndex.id_of(station, averaging,
                                                              _dt(hour, self.tz)),
                       rev, make, observes)

    def to_state(self, station_id: str) -> dict[str, Any]:
        import copy

        return copy.deepcopy(self._state.get(station_id, {"hours": {}, "newest": None}))

    def forget(self, station_id: str) -> None:
        self._state.pop(station_id, None)
        self._series.pop(station_id, None)
        self._before.pop(station_id, None)

    def from_state(self, station_id: str, state: dict[str, Any]) -> None:
        import copy

        self._state[station_id] = copy.deepcopy(state) if state else {"hours": {},
                                                                       "newest": None}
        self._series.pop(station_id, None)
        self._before.pop(station_id, None)


# ============================================================================================
# incidents
# ============================================================================================

TERMINAL = {IncidentStatus.RESOLVED.value, IncidentStatus.CANCELLED.value}
ORDER = {s.value: n for s, n in INCIDENT_ORDER.items()}
#: the status of an ``IncidentStats`` record for an incident closed without word
#: (``IncidentAggregator.expire_quiet``); not a status a feed sends
EXPIRED = "expired"
#: what the indexes hold for an incident: (zone, open?, closing time, latest update if open)
Footprint = tuple[str, bool, float | None, float | None]


class IncidentAggregator:
    """Open incidents per zone, reported → on-scene seconds, lifecycle order checks.

    Out-of-order delivery is normal (a status update can overtake the first report), so an
    update with a lower status and an earlier time is accepted and fills in its timestamp.
    Violations (still published as ``Outcome.violations`` for data-quality counting):
    ``missing_reported`` (first seen in a later status), ``repeated_status`` (the same status
    twice: the earliest time is kept), ``time_before_previous_status`` (a later status with an
    earlier time than an earlier status), ``status_regression`` and ``after_terminal``
    (ignored: the state never goes back), ``zone_changed`` (the newest zone wins).

    An incident still open with no update for a long time of event time (``expire_quiet``)
    is taken as closed without word: a feed that never sends the closing update would
    otherwise keep it open for good, in the zone's open count, in the alert engine, and in
    every snapshot of the partition's state.
    """

    def __init__(self, tz: ZoneInfo = SHANGHAI) -> None:
        self.tz = tz
        self._incidents: dict[str, dict[str, Any]] = {}
        # kept beside the incidents, so no event scans them all (a day of a busy district
        # holds hundreds): open incidents per zone, and heaps of (closing time, incident)
        # and of (an open incident's latest update, incident) whose entries left behind by a
        # later change are skipped when they come up
        self._open: dict[str, int] = {}
        self._closed: list[tuple[float, str]] = []
        self._quiet: list[tuple[float, str]] = []

    def open_count(self, zone_id: str) -> int:
        return self._open.get(zone_id, 0)

    @staticmethod
    def _footprint(inc: dict[str, Any] | None) -> Footprint | None:
        """(zone, open?, closing time, latest update if open) of an incident, what the
        indexes hold for it."""
        if inc is None:
            return None
        times = inc["times"]
        if inc["status"] in TERMINAL:
            return inc["zone"], False, times[inc["status"]], None
        return inc["zone"], True, None, max(times.values())

    def _index(self, incident_id: str, before: Footprint | None,
               after: Footprint | None) -> None:
        if before is not None and before[1]:
            left = self._open[before[0]] - 1
            if left:
                self._open[before[0]] = left
            else:
                del self._open[before[0]]
        if after is None:
            return
        if after[1]:
            self._open[after[0]] = self._open.get(after[0], 0) + 1
        if after[2] is not None and (before is None or before[2] != after[2]):
            heapq.heappush(self._closed, (after[2], incident_id))
        if after[3] is not None and (before is None or before[3] != after[3]):
            heapq.heappush(self._quiet, (after[3], incident_id))

    def add(self, ev: IncidentReported | FastIncident, emitted_at: datetime) -> Outcome:
        before = self._footprint(self._incidents.get(ev.incident_id))
        folded = self._fold(ev)
        if isinstance(folded, Outcome):
            return folded  # refused: nothing changed
        inc, violations = folded
        after = self._footprint(inc)
        assert after is not None
        self._index(ev.incident_id, before, after)
        rec = self._stats(ev.incident_id, inc, inc["status"], ev.event_time, emitted_at)
        return Outcome(True, [rec], violations=violations)

    def _stats(self, incident_id: str, inc: dict[str, Any], status: str, event_time: datetime,
               emitted_at: datetime) -> IncidentStats:
        """The incident's record: its zone's open incidents now, its response time if known."""
        times = inc["times"]
        response = None
        if "reported" in times and "on_scene" in times:
            response = max(0.0, times["on_scene"] - times["reported"])
        return IncidentStats.trusted(  # of validated updates: see ``trusted``
            zone_id=inc["zone"], event_time=event_time, incident_id=incident_id,
            status=status, open_count=self.open_count(inc["zone"]),
            response_s=None if response is None else float(response),
            emitted_at=emitted_at)

    def _fold(self, ev: IncidentReported | FastIncident
              ) -> Outcome | tuple[dict[str, Any], list[str]]:
        """Apply one update: the incident and its violations, or the refusal."""
        ts = ev.event_time.timestamp()
        status = ev.status.value
        violations: list[str] = []
        inc = self._incidents.get(ev.incident_id)
        if inc is None:
            inc = {"zone": ev.zone_id, "status": status, "times": {status: ts},
                   "severity": ev.severity.value}
            self._incidents[ev.incident_id] = inc
            if status != IncidentStatus.REPORTED.value:
                violations.append("missing_reported")
        else:
            cur = inc["status"]
            if status in inc["times"]:
                violations.append("repeated_status")
                inc["times"][status] = min(inc["times"][status], ts)
            else:
                if cur in TERMINAL and ts >= inc["times"][cur]:
                    return Outcome(False, violations=["after_terminal"])
                if ORDER[status] < ORDER[cur] and ts > inc["times"][cur]:
                    return Outcome(False, violations=["status_regression"])
                earlier = [t for s, t in inc["times"].items() if ORDER[s] < ORDER[status]]
                if earlier and ts < max(earlier):
                    violations.append("time_before_previous_status")
                inc["times"][status] = ts
                if ORDER[status] > ORDER[cur] or (
                        ORDER[status] == ORDER[cur] and status in TERMINAL):
                    inc["status"] = status
            if ev.zone_id != inc["zone"]:
                violations.append("zone_changed")
                inc["zone"] = ev.zone_id
            inc["severity"] = ev.severity.value
        return inc, violations

    def evict_closed_before(self, ts: datetime) -> int:
        """Drop incidents closed before ``ts`` (bounded state); returns how many."""
        cutoff = ts.timestamp()
        gone = 0
        while self._closed and self._closed[0][0] < cutoff:
            closed_at, key = heapq.heappop(self._closed)
            now = self._footprint(self._incidents.get(key))
            if now is not None and now[2] == closed_at:  # still closed at that time
                del self._incidents[key]
                gone += 1
        return gone

    def expire_quiet(self, now: datetime, quiet_s: float, emitted_at: datetime,
                     keep: str | None = None) -> list[IncidentStats]:
        """Close the incidents still open whose latest update is more than ``quiet_s`` of
        event time before ``now``: each leaves the state and the zone's open count, and
        yields a record with status ``expired`` dated ``quiet_s`` after that update (the
        same whenever a replay reaches it). ``keep`` is the incident the event at hand
        updates: that update shows it is still alive."""
        cutoff = now.timestamp() - quiet_s
        out: list[IncidentStats] = []
        kept: list[tuple[float, str]] = []
        while self._quiet and self._quiet[0][0] < cutoff:
            entry = heapq.heappop(self._quiet)
            latest, key = entry
            inc = self._incidents.get(key)
            footprint = self._footprint(inc)
            if inc is None or footprint is None or footprint[3] != latest:
                continue  # closed, gone or updated since: a later entry stands for it
            if key == keep:
                kept.append(entry)
                continue
            del self._incidents[key]
            self._index(key, footprint, None)
            out.append(self._stats(key, inc, EXPIRED, _dt(latest + quiet_s, self.tz),
                                   emitted_at))
        for entry in kept:
            heapq.heappush(self._quiet, entry)
        return out

    def to_state(self) -> dict[str, Any]:
        return {k: {"zone": i["zone"], "status": i["status"], "times": dict(i["times"]),
                    "severity": i["severity"]} for k, i in self._incidents.items()}

    def from_state(self, state: dict[str, Any]) -> None:
        self._incidents = {k: {"zone": i["zone"], "status": i["status"],
                               "times": dict(i["times"]), "severity": i["severity"]}
                           for k, i in state.items()}
        self._open, self._closed, self._quiet = {}, [], []
        for k, inc in self._incidents.items():
            self._index(k, None, self._footprint(inc))


def utc(ts_s: float) -> datetime:
    """POSIX seconds as an aware UTC datetime (tests, wiring)."""
    return datetime.fromtimestamp(ts_s, UTC)
