"""Grafana's evaluation of the generated alert rules, replayed next to the stream alert engine.

``GrafanaRuleSim`` follows Grafana's per-series state machine for a rule with a pending period
(``for``), ``keepFiringFor`` and a threshold expression with a recovery threshold:
Normal → Pending → Alerting → Recovering → Normal. Query A runs on the real engine, expanded
by ``macros``, at every evaluation. ``compare`` feeds the same observations to the stream
engine (``streams.alerts.machine.AlertEngine``) and reports every evaluation instant at which
the two disagree on which subjects fire at which level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from cityops.core.deadletter import DeadLetter
from cityops.core.feeds import (
    AirQualityObserved,
    Envelope,
    FootfallObserved,
    IncidentReported,
    ParkingObserved,
)
from cityops.core.registry import CarPark, Counter, Registry, Station
from cityops.dashboards import macros
from cityops.dashboards.alerts import FIRE_ABOVE, RECOVER_BELOW, GrafanaRule
from cityops.streams.alerts.machine import AlertEngine
from cityops.streams.alerts.rules import INCIDENT_SEVERITY_RANK, Rule, RuleSet, levels_for
from cityops.streams.records import AirQualityIndex, FootfallWindow, ParkingState
from cityops.warehouse.backend import Warehouse
from cityops.warehouse.rows import event_row, record_row


def _seconds(text: str) -> float:
    return float(text.removesuffix("s"))


@dataclass
class GrafanaRuleSim:
    """Per-series states of one Grafana rule."""

    for_s: float
    keep_firing_s: float
    states: dict[str, tuple[str, float]] = field(default_factory=dict)

    def step(self, at_s: float, signals: dict[str, float]) -> set[str]:
        """One evaluation; returns the subjects firing (Alerting or Recovering)."""
        for subject in set(self.states) | set(signals):
            state, since = self.states.get(subject, ("normal", at_s))
            sig = signals.get(subject)
            firing = state in ("alerting", "recovering")
            cond = (sig is not None and sig >= RECOVER_BELOW) if firing else (
                sig is not None and sig > FIRE_ABOVE)
            if state == "normal":
                new = ("alerting", at_s) if cond and self.for_s <= 0 else (
                    ("pending", at_s) if cond else ("normal", at_s))
            elif state == "pending":
                new = (("alerting", at_s) if at_s - since >= self.for_s else (state, since)) \
                    if cond else ("normal", at_s)
            elif state == "alerting":
                new = ("alerting", since) if cond else (
                    ("recovering", at_s) if self.keep_firing_s > 0 else ("normal", at_s))
            else:  # recovering
                new = ("alerting", at_s) if cond else (
                    ("normal", at_s) if at_s - since >= self.keep_firing_s else (state, since))
            if new[0] == "normal":
                self.states.pop(subject, None)
            else:
                self.states[subject] = new
        return {s for s, (st, _) in self.states.items() if st in ("alerting", "recovering")}


def signals(wh: Warehouse, rule: GrafanaRule, at: datetime) -> dict[str, float]:
    """Query A of ``rule`` evaluated at ``at`` on the warehouse: {subject: signal}."""
    ctx = macros.QueryContext(at - timedelta(seconds=rule.lookback_s), at, 10_000, {})
    rows = wh.query(macros.expand_backend(rule.sql, ctx))
    return {str(s): float(v) for s, v in rows}


# --- fixtures -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Observation:
    """What the stream engine learns at ``at``: a value of ``subject`` for most kinds; a report
    of source ``subject`` for ``dead_sensor``; ``value`` accepted and ``dead`` dead-lettered
    records of feed ``subject`` for ``dead_letter_rate``."""

    kind: str
    subject: str
    value: float
    at: datetime
    dead: int = 0


def feed_engine(engine: AlertEngine, o: Observation) -> None:
    """Give ``o`` to the engine through the call the worker makes for that kind."""
    if o.kind == "dead_sensor":
        engine.heartbeat(o.subject, o.at)
    elif o.kind == "dead_letter_rate":
        engine.record_intake(o.subject, int(o.value), o.dead, o.at)
    else:
        engine.observe(o.kind, o.subject, o.value, o.at)


def trace(rule: Rule, subject: str, registry: Registry, step_s: float) -> list[float]:
    """Values that cross every level of ``rule`` for ``subject`` up and down, holding each long
    enough to fire and to clear, plus brief spikes shorter than ``min_fire_s``."""
    levels = levels_for(rule, subject, registry)
    hold_up = int(rule.min_fire_s // step_s) + 3
    hold_down = int(rule.min_clear_s // step_s) + 3
    low = levels[0].clear * 0.5
    out = [low] * 3
    if rule.min_fire_s >= 2 * step_s:
        out += [levels[0].fire] + [low] * 2  # a spike: must not fire
    for lv in levels:
        out += [lv.fire] * hold_up
        out += [(lv.fire + lv.clear) / 2] * 2  # between clear and fire: holds
    for lv in reversed(levels):
        out += [lv.clear * 0.99] * hold_down
    out += [low] * hold_down
    return out


@dataclass(frozen=True)
class Written:
    """A warehouse row the sink writes at ``at`` (rows appear as time passes, never earlier)."""

    at: datetime
    table: str
    row: dict


def scenario(rule: Rule, registry: Registry, start: datetime,
             tz: ZoneInfo) -> tuple[list[Written], list[Observation], datetime]:
    """Warehouse rows and engine observations of one rule's scenario; returns its end too."""
    rows: list[Written] = []
    obs: list[Observation] = []

    def add(rec: object) -> None:
        table, row = (event_row(rec) if isinstance(rec, IncidentReported)
                      else record_row(rec))  # type: ignore[arg-type]
        at = getattr(rec, "emitted_at", None) or rec.event_time  # type: ignore[attr-defined]
        rows.append(Written(at, table, row))

    if rule.kind == "incident":
        return _incident_scenario(rule, start, add, rows, obs)
    if rule.kind == "dead_sensor":
        return _dead_sensor_scenario(registry, start, rows, obs)
    if rule.kind == "dead_letter_rate":
        return _dead_letter_scenario(registry, start, rows, obs)
    step = {"crowd_density": 60.0, "carpark_occupancy": 60.0, "aqi": 300.0}[rule.kind]
    subjects = {"crowd_density": sorted(registry.zones)[:2],
                "carpark_occupancy": sorted(registry.carparks)[:2],
                "aqi": sorted(registry.stations)[:2]}[rule.kind]
    end = start
    for n, subject in enumerate(subjects):
        values = trace(rule, subject, registry, step)
        if n == 1:  # the second subject stays quiet: it must never fire
            values = [levels_for(rule, subject, registry)[0].clear * 0.5] * len(values)
        for i, v in enumerate(values):
            t = (start + timedelta(seconds=(i + 1) * step)).astimezone(tz)
            end = max(end, t)
            if rule.kind == "crowd_density":
                add(FootfallWindow(zone_id=subject, window="tumbling_1m",
                                   window_start=t - timedelta(seconds=60), window_end=t,
                                   entries=0, exits=0, events=1, net_presence=v,
                                   density_ppm2=v, emitted_at=t))
            elif rule.kind == "carpark_occupancy":
                cap = 1000
                occupied = round(v * cap)
                v = occupied / cap
                add(ParkingState(carpark_id=subject, event_time=t, capacity=cap,
                                 occupied=occupied, occupancy_rate=v, trend_per_min=0.0,
                                 emitted_at=t))
            else:
                v = float(round(v))
                add(AirQualityIndex(station_id=subject, averaging="1h", aqi=int(v),
                                    hour_start=t.replace(minute=0, second=0), revision=i,
                                    emitted_at=t, category=""))
            obs.append(Observation(rule.kind, subject, v, t))
    return rows, obs, end


def _incident_scenario(rule: Rule, start: datetime, add: Callable[[object], None],
                       rows: list[Written], obs: list[Observation],
                       ) -> tuple[list[Written], list[Observation], datetime]:
    """One incident rises to high then critical and resolves; another stays medium."""

    plan = {  # incident → [(minute, status, severity)]
        "inc_fire": [(1, "reported", "high"), (4, "dispatched", "critical"),
                     (9, "on_scene", "critical"), (15, "resolved", "critical")],
        "inc_quiet": [(2, "reported", "medium"), (8, "resolved", "medium")],
    }
    end = start
    for inc, steps in plan.items():
        for j, (minute, status, severity) in enumerate(steps):
            t = start + timedelta(minutes=minute)
            end = max(end, t)
            add(IncidentReported(event_id=f"{inc}:{j}", source="z", event_time=t,
                                 incident_id=inc, incident_type="medical", severity=severity,
                                 zone_id="jiefangbei", status=status))
            value = INCIDENT_SEVERITY_RANK[severity] if status not in (
                "resolved", "cancelled") else 0.0
            obs.append(Observation("incident", inc, float(value), t))
    return rows, obs, end + timedelta(minutes=5)


def _raw(event: Envelope, at: datetime) -> Written:
    table, row = event_row(event, ingested_at=at)
    return Written(at, table, row)


def _report(registry: Registry, source: str, at: datetime, n: int) -> Envelope:
    """A valid raw report of ``source`` (a counter, car park or station) at ``at``."""
    eid = f"{source}:{n}"
    if source in registry.counters:
        c = registry.counters[source]
        return FootfallObserved(event_id=eid, source=source, event_time=at, zone_id=c.zone_id,
                                entries=3, exits=2, interval_s=int(c.cadence_s))
    if source in registry.carparks:
        return ParkingObserved(event_id=eid, source=source, event_time=at, carpark_id=source,
                               capacity=registry.carparks[source].capacity, occupied=10)
    return AirQualityObserved(event_id=eid, source=source, event_time=at, station_id=source,
                              pm25_ugm3=35.0)


#: the dead-sensor scenario: the loud counter falls silent at SILENT_FROM for SILENT_FOR
SILENT_FROM, SILENT_FOR, DEAD_SENSOR_END = (timedelta(minutes=10), timedelta(minutes=40),
                                            timedelta(minutes=60))


def dead_sensor_subjects(registry: Registry) -> tuple[str, str]:
    """(loud, quiet): the counter that falls silent and one that never does."""
    counters = sorted(registry.counters)
    return counters[0], counters[1]


def _dead_sensor_scenario(registry: Registry, start: datetime, rows: list[Written],
                          obs: list[Observation]) -> tuple[list[Written], list[Observation],
                                                           datetime]:
    """Every registered source reports at its cadence from ``start`` (Grafana looks back three
    days and the engine counts from its start: both see each source from the first instant);
    the loud counter is silent long enough to reach every level, then reports again."""
    loud, _ = dead_sensor_subjects(registry)
    sources: list[Counter | CarPark | Station] = [
        *registry.counters.values(), *registry.carparks.values(), *registry.stations.values()]
    end = start + DEAD_SENSOR_END
    silent = (start + SILENT_FROM, start + SILENT_FROM + SILENT_FOR)
    for site in sources:
        step = timedelta(seconds=float(site.cadence_s))
        t, n = start, 0
        while t <= end:
            if not (site.id == loud and silent[0] <= t < silent[1]):
                rows.append(_raw(_report(registry, site.id, t, n), t))
                obs.append(Observation("dead_sensor", site.id, 0.0, t))
            t, n = t + step, n + 1
    return rows, obs, end


#: the dead-letter scenario, per 10 s: (minutes, dead letters beside ten accepted records)
DEAD_LETTER_PHASES = ((8, 0), (10, 2), (10, 5), (12, 0), (5, 1), (12, 0))
DEAD_LETTER_LOUD, DEAD_LETTER_QUIET = "footfall", "parking"


def _dead_letter_scenario(registry: Registry, start: datetime, rows: list[Written],
                          obs: list[Observation]) -> tuple[list[Written], list[Observation],
                                                           datetime]:
    """Ten records of each of two feeds every 10 s; the loud feed's dead letters rise past both
    levels and stop, then rise again only past the warning level and stop; the quiet feed has
    none."""
    counter = sorted(registry.counters)[0]
    carpark = sorted(registry.carparks)[0]
    t, n = start, 0
    for minutes, dead in DEAD_LETTER_PHASES:
        for _ in range(minutes * 6):
            t += timedelta(seconds=10)
            for feed, source in ((DEAD_LETTER_LOUD, counter), (DEAD_LETTER_QUIET, carpark)):
                for _ in range(10):
                    rows.append(_raw(_report(registry, source, t, n), t))
                    n += 1
                bad = dead if feed == DEAD_LETTER_LOUD else 0
                for _ in range(bad):
                    letter = DeadLetter.from_bytes(
                        b"{", feed=feed, reason="malformed_json", detail="scenario",
                        source_topic="raw", source_partition=0, source_offset=n,
                        received_at=t, stage="stream")
                    table, row = record_row(letter)
                    rows.append(Written(t, table, row))
                    n += 1
                obs.append(Observation("dead_letter_rate", feed, 10.0, t, dead=bad))
    return rows, obs, t + timedelta(minutes=1)


def engine_firing(engine: AlertEngine, rule: Rule) -> dict[int, set[str]]:
    """Subjects whose active alert of ``rule`` is at level index ≥ i, per level index."""
    order = [lv.severity for lv in rule.levels]
    out: dict[int, set[str]] = {i: set() for i in range(len(order))}
    for a in engine.active_alerts():
        if a["rule_id"] != rule.id or not str(a["state"]).startswith("active"):
            continue
        for i in range(order.index(a["severity"]) + 1):
            out[i].add(a["subject"])
    return out


@dataclass
class Comparison:
    instants: int = 0
    fired: dict[str, int] = field(default_factory=dict)  # grafana rule uid → firing instants
    subjects: dict[str, set[str]] = field(default_factory=dict)  # uid → subjects that fired
    mismatches: list[str] = field(default_factory=list)


def compare(wh: Warehouse, rules: RuleSet, registry: Registry, grafana_rules: list[GrafanaRule],
            rule: Rule, obs: list[Observation], written: list[Written], start: datetime,
            end: datetime, interval_s: int) -> Comparison:
    """Evaluate ``rule``'s Grafana rules and the engine over ``start``–``end``; disagreements.

    Rows reach the warehouse when they are written (``written``), as the sink would write them.
    """
    mine = [g for g in grafana_rules if g.rule.id == rule.id]
    sims = {g.uid: GrafanaRuleSim(_seconds(g.body["for"]), _seconds(g.body["keepFiringFor"]))
            for g in mine}
    engine = AlertEngine(rules, registry, clock=lambda: start)
    pending = sorted(obs, key=lambda o: o.at)
    unwritten = sorted(written, key=lambda w: w.at)
    result = Comparison(fired={g.uid: 0 for g in mine}, subjects={g.uid: set() for g in mine})
    for t in _instants(start, end, interval_s):
        due: dict[str, list[dict]] = {}
        while unwritten and unwritten[0].at <= t:
            w = unwritten.pop(0)
            due.setdefault(w.table, []).append(w.row)
        for table, rows in due.items():
            wh.insert(table, rows)
        while pending and pending[0].at <= t:
            feed_engine(engine, pending.pop(0))
        engine.tick(t)
        want = engine_firing(engine, rule)
        for g in mine:
            got = sims[g.uid].step(t.timestamp(), signals(wh, g, t))
            result.fired[g.uid] += bool(got)
            result.subjects[g.uid] |= got
            if got != want[g.level_index]:
                result.mismatches.append(f"{g.uid} at {t.isoformat()}: Grafana {sorted(got)}, "
                                         f"engine {sorted(want[g.level_index])}")
        result.instants += 1
    return result


def _instants(start: datetime, end: datetime, step_s: int) -> Iterator[datetime]:
    t = start
    while t <= end:
        yield t
        t += timedelta(seconds=step_s)


#: scenarios lie this far apart in time, each on its own day of one warehouse
SCENARIO_SPACING = timedelta(days=1)


def replay(wh: Warehouse, rules: RuleSet, registry: Registry, grafana_rules: list[GrafanaRule],
           rule_id: str, start: datetime, tz: ZoneInfo, interval_s: int) -> Comparison:
    """One rule's scenario on its own day after ``start`` (the rule's place in the rules file),
    so rules can be replayed one at a time, in any order, on one warehouse."""
    index = [r.id for r in rules.rules].index(rule_id)
    rule = rules.rules[index]
    start = start + index * SCENARIO_SPACING
    written, obs, end = scenario(rule, registry, start, tz)
    # hourly AQI scenarios step 5 min: every minute is enough (their durations are whole
    # minutes), the others are evaluated at the rule group's interval
    every = 60 if rule.kind == "aqi" else interval_s
    return compare(wh, rules, registry, grafana_rules, rule, obs, written, start, end, every)


def replay_all(wh: Warehouse, rules: RuleSet, registry: Registry,
               grafana_rules: list[GrafanaRule], start: datetime, tz: ZoneInfo,
               interval_s: int) -> dict[str, Comparison]:
    """Every rule's scenario on an empty warehouse."""
    return {r.id: replay(wh, rules, registry, grafana_rules, r.id, start, tz, interval_s)
            for r in rules.rules}
