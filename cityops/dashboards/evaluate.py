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

from cityops.core.feeds import IncidentReported
from cityops.core.registry import Registry
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
    kind: str
    subject: str
    value: float
    at: datetime


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
            o = pending.pop(0)
            engine.observe(o.kind, o.subject, o.value, o.at)
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


#: rule kinds whose Grafana rules are replayed against the engine (the others read raw tables
#: and intake counts the engine keeps in memory: their queries are checked for shape only)
REPLAYED = ("crowd_density", "carpark_occupancy", "aqi", "incident")


def replay_all(wh: Warehouse, rules: RuleSet, registry: Registry,
               grafana_rules: list[GrafanaRule], start: datetime, tz: ZoneInfo,
               interval_s: int) -> dict[str, Comparison]:
    """Every replayed rule's scenario, one after another in time, on an empty warehouse."""
    out = {}
    for rule in rules.rules:
        if rule.kind not in REPLAYED:
            continue
        written, obs, end = scenario(rule, registry, start, tz)
        # hourly AQI scenarios step 5 min: every minute is enough (their durations are whole
        # minutes), the others are evaluated at the rule group's interval
        every = 60 if rule.kind == "aqi" else interval_s
        out[rule.id] = compare(wh, rules, registry, grafana_rules, rule, obs, written, start,
                               end, every)
        start = end + timedelta(hours=6)
    return out
