"""The alert state machine: one alert per (rule, subject) at a time, fired once, cleared once.

Lifecycle (``cityops.streams.records.AlertState``): a new alert is ``active_unack``; an
operator's ``acknowledge`` makes it ``active_ack``; when the condition ends it becomes
``cleared_unack`` (kept until acknowledged) or ``cleared_ack`` (closed). Severity changes of
a live alert are ``SEVERITY_CHANGED`` events on the same ``alert_id``; an active alert left
unacknowledged is ``ESCALATED`` along the rule's chain. Every event carries the alert's
stable ``alert_id`` and a per-alert ``seq``.

History: with ``history_after_s`` set (the worker sets it to the webhooks' age limit,
``CITYOPS_ALERT_WEBHOOK_MAX_AGE_S``), an event whose event time is older than that by the wall
clock when it is emitted is history, sent to no one. An alert none of whose events was sent
that fired longer ago than ``review_within_s`` (``CITYOPS_ALERT_REVIEW_MAX_AGE_S``, a day)
closes when it clears, as ``cleared_ack``, instead of waiting for an acknowledgement nobody
was asked for: three days of history replayed left 26 for an officer to acknowledge one by
one (some 3,000 a year), each also kept in the engine's snapshot. The alerts of a catch-up
after a shorter outage still wait, for the shift to review what happened meanwhile. Every
event stays in the warehouse's ``alerts`` table.

An alert of history is not escalated: escalation means nobody answered the alert they were
sent, and with the wall alert clock a catch-up after an outage used to send "unacknowledged,
escalated" for alerts nobody had seen, some of them over for hours. Instead an alert still
active when its data is current again is sent once, as ``REMINDED`` ("still active, fired …
before in replayed history"), and escalates from then: on the first observation of it within
the webhooks' horizon, or, once the engine's newest data is within that horizon, on a tick, if
its own newest observation is within the review age (an incident opened during the outage and
still open sends no new report). Any other first event sent of such an alert says when it
fired. Escalations count from when an alert's first event was sent (on the ticks' clock, if
later than the event's own time): a catch-up after a short outage reads a firing of
14 minutes ago, sends it, and the shift lead's 5 minutes start then.

Anti-flap: a rule's level is computed with hysteresis (levels at or below the current one
hold while ``value ≥ clear``; higher ones need ``value ≥ fire``) and a change is applied only
after the new level has been wanted continuously for ``min_fire_s`` (up) or ``min_clear_s``
(down); any observation back at the current level resets that timer. ``tick(now)`` applies
changes that came due with no newer observation (the last value is assumed to persist).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cityops.core.registry import Registry
from cityops.streams.alerts.rules import Level, Rule, RuleSet, levels_for
from cityops.streams.exceptions import StreamsError
from cityops.streams.records import AlertEvent, AlertEventKind, AlertState

Clock = Callable[[], datetime]
BUCKET_S = 10.0  # dead-letter rate buckets
#: (rule, subject) levels an engine keeps worked out (``AlertEngine._levels_of``)
LEVELS_KEPT = 10_000


class UnknownAlertError(StreamsError):
    """``acknowledge`` named an alert that is neither active nor awaiting acknowledgement."""

    code = "unknown_alert"


def _ts(at: datetime) -> float:
    if at.tzinfo is None:
        raise ValueError("alert times must be timezone-aware")
    return at.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _span(seconds: float) -> str:
    """``2 h 35 min``, ``3 d 4 h``, ``40 s``: how long ago, as an officer reads it."""
    s = int(max(0.0, seconds))
    d, h, m = s // 86_400, s % 86_400 // 3600, s % 3600 // 60
    if d:
        return f"{d} d {h} h" if h else f"{d} d"
    if h:
        return f"{h} h {m} min" if m else f"{h} h"
    return f"{m} min" if m else f"{s} s"


def _fired_before(alert: dict[str, Any], at: float) -> str:
    return f"fired {_span(at - alert['fired_at'])} before in replayed history, not sent until now"


def is_history(at_s: float, now_s: float, max_age_s: float) -> bool:
    """Whether an alert event at ``at_s`` (event time, POSIX s) is older than ``max_age_s``
    at ``now_s`` (the wall clock): sent to no webhook (``WebhookDispatcher.offer``), and what
    the engine's history rule counts as unsent. 0 makes nothing history."""
    return bool(max_age_s) and now_s - at_s > max_age_s


class AlertEngine:
    """Turns observations, heartbeats and time into ``AlertEvent`` s (pure; state is a dict)."""

    def __init__(self, rules: RuleSet, registry: Registry | None,
                 clock: Clock = lambda: datetime.now(UTC), silence_by_feed: bool = False,
                 history_after_s: float = 0.0, review_within_s: float = 0.0) -> None:
        """``silence_by_feed`` (event-time clocks): a sensor's silence is measured against the
        newest report on its own *lane* (the topic partition its reports arrive on, given with
        each heartbeat; while it is unknown, the slowest lane of its kind), not the newest
        event of any feed: during an accelerated replay partitions are processed at different
        paces, and a lagging one must not look silent. A lane whose sensors all stop shows as
        its clock stopping, not as dead sensors. With the wall clock a lane's present is now
        less how late its newest report was read (``_lane_now``): a catch-up after an outage
        does not make every sensor look silent, and a lane that stops still runs on.

        ``history_after_s``: events older than this by ``clock`` are history (above);
        ``review_within_s``: an alert of history only, fired longer ago than this, needs no
        acknowledgement; either 0: every cleared alert waits for one."""
        self.silence_by_feed = silence_by_feed
        self.history_after_s = history_after_s
        self.review_within_s = review_within_s
        self.rules = rules
        self.registry = registry
        self.clock = clock
        self._trackers: dict[str, dict[str, Any]] = {}  # "rule_id|subject" → tracker
        self._awaiting_ack: dict[str, dict[str, Any]] = {}  # cleared_unack alerts by id
        self._last_seen: dict[str, float] = {}
        self._lane_of: dict[str, str] = {}  # source → "topic/partition" its reports come on
        self._lane_clock: dict[str, float] = {}  # lane → newest heartbeat time on it
        self._lane_lag: dict[str, float] = {}  # lane → how late (wall clock) that one was read
        self._started_at: float | None = None
        self._data_clock: float | None = None  # newest observation or heartbeat time
        self._intake: dict[str, list[list[float]]] = {}  # feed → [[bucket_s, ok, dead]]
        #: the rules of each kind and a rule's levels per subject, read once for the rules
        #: and registry they come from (``_rules_of``, ``_levels_of``): every observation
        #: and heartbeat filtered the rule list again, and a crowd density rule built its
        #: zone's levels as new models
        self._memo_of: tuple[RuleSet, Registry | None] | None = None
        self._kinds: dict[str, list[Rule]] = {}
        self._levels: dict[tuple[str, str], tuple[Level, ...]] = {}

    # --- rules ---------------------------------------------------------------------------
    def _memo(self) -> None:
        """Forget what was read of rules or a registry the engine no longer holds."""
        memo_of = self._memo_of
        if memo_of is None or memo_of[0] is not self.rules or memo_of[1] is not self.registry:
            self._memo_of = (self.rules, self.registry)
            self._kinds.clear()
            self._levels.clear()

    def _rules_of(self, kind: str) -> list[Rule]:
        """``RuleSet.by_kind``, read once per kind."""
        self._memo()
        rules = self._kinds.get(kind)
        if rules is None:
            rules = self._kinds[kind] = self.rules.by_kind(kind)
        return rules

    def _levels_of(self, rule: Rule, subject: str) -> tuple[Level, ...]:
        """``levels_for`` with the engine's registry, read once per rule and subject (up to
        ``LEVELS_KEPT`` of them: incident ids are subjects too, and never come back)."""
        self._memo()
        key = (rule.id, subject)
        levels = self._levels.get(key)
        if levels is None:
            if len(self._levels) >= LEVELS_KEPT:
                self._levels.clear()
            levels = self._levels[key] = levels_for(rule, subject, self.registry)
        return levels

    # --- events --------------------------------------------------------------------------
    def _is_history(self, at: float) -> bool:
        """Whether an event at ``at`` (event time) is older than the horizon by the wall
        clock now: what the webhooks leave unsent (``WebhookDispatcher.offer``)."""
        return is_history(at, _ts(self.clock()), self.history_after_s)

    def _needs_no_review(self, alert: dict[str, Any]) -> bool:
        """Nobody was told of the alert and it fired before the review horizon: its clear
        (sent or not) closes it. An alert from a snapshot taken before ``live`` was kept
        counts as live."""
        return (bool(self.history_after_s and self.review_within_s)
                and not alert.get("live", True)
                and _ts(self.clock()) - alert["fired_at"] > self.review_within_s)

    def _event(self, rule: Rule, subject: str, alert: dict[str, Any], kind: AlertEventKind,
               at: float, *, actor: str | None = None, note: str = "") -> AlertEvent:
        alert["seq"] += 1
        if not self._is_history(at) and not alert.get("live", True):
            # the first event of it sent: escalations count from when it was sent, not from
            # its event time (a firing read 14 minutes late escalated twice within a minute)
            alert["live"], alert["noticed_at"] = True, self._sent_at(at)
            if kind not in (AlertEventKind.FIRED, AlertEventKind.REMINDED,
                            AlertEventKind.ACKNOWLEDGED) and not note:
                note = f" ({_fired_before(alert, at)})"
        value = alert.get("value")
        threshold = alert.get("threshold")
        sev = alert["severity"]
        if kind is AlertEventKind.CLEARED:
            msg = f"{rule.title} cleared: {subject} at {value:g} {rule.unit}".rstrip() + note
        elif kind is AlertEventKind.ACKNOWLEDGED:
            msg = f"{rule.title}: {subject} acknowledged by {actor}"
        elif kind is AlertEventKind.ESCALATED:
            msg = (f"{rule.title}: {subject} unacknowledged, escalated to level "
                   f"{alert['escalation_level']} ({alert.get('notify', '')})")
        else:
            msg = f"{rule.title} {sev}: {subject} {value:g} ≥ {threshold:g} {rule.unit}".rstrip()
            if kind is AlertEventKind.REMINDED:
                msg += f", still active; {_fired_before(alert, at)}"
            else:
                msg += note
        return AlertEvent(
            alert_id=alert["alert_id"], rule_id=rule.id, rule_version=self.rules.version,
            subject=subject, kind=kind, state=AlertState(alert["state"]), severity=sev,
            value=value, threshold=threshold, message=msg,
            escalation_level=alert["escalation_level"], actor=actor, event_time=_dt(at),
            emitted_at=self.clock(), seq=alert["seq"])

    def _sent_at(self, at: float) -> float:
        """When an event at ``at`` emitted now is sent, on the clock ``tick`` is given: the
        wall clock, or with the event clock (``silence_by_feed``) the newest event time seen.
        Without a history horizon every event counts as sent when it happened."""
        if not self.history_after_s:
            return at
        now = self._data_clock if self.silence_by_feed else _ts(self.clock())
        return max(at, at if now is None else now)

    def _unsent_active(self, tr: dict[str, Any]) -> dict[str, Any] | None:
        """The tracker's alert if it is active, unacknowledged and none of its events was
        sent."""
        alert = tr.get("alert")
        if (alert is None or alert.get("live", True)
                or alert["state"] != AlertState.ACTIVE_UNACK.value):
            return None
        return alert

    def _remind(self, rule: Rule, subject: str, tr: dict[str, Any], at: float,
                *, on_tick: bool) -> list[AlertEvent]:
        """``REMINDED`` for an alert nobody was sent that is still active on current data (and
        not on its way to clearing): its newest observation is within the webhooks' horizon,
        or (``on_tick``) the engine's newest data is and the alert's own newest observation is
        within the review age."""
        alert = self._unsent_active(tr)
        if alert is None or self._is_history(at) or str(tr["level"]) in tr.get("since", {}):
            return []  # (a level timing out is clearing: its clear will say it all)
        current = not self._is_history(tr["at"])
        caught_up = (on_tick and self._data_clock is not None
                     and not self._is_history(self._data_clock)
                     and _ts(self.clock()) - tr["at"] <= self.review_within_s)
        if not (current or caught_up):
            return []
        alert["value"] = tr["value"]  # as it is now, not when the level last changed
        return [self._event(rule, subject, alert, AlertEventKind.REMINDED, at)]

    # --- observations ----------------------------------------------------------------------
    def observe(self, rule_kind: str, subject: str, value: float,
                at: datetime) -> list[AlertEvent]:
        """Feed one measurement to every rule of ``rule_kind``; returns the events caused."""
        return self.observed(rule_kind, subject, value, _ts(at))

    def observed(self, rule_kind: str, subject: str, value: float,
                 ts: float) -> list[AlertEvent]:
        """``observe`` at ``ts`` POSIX seconds (the worker's observation inputs carry them)."""
        rules = self._rules_of(rule_kind)
        if not rules:
            raise KeyError(f"no alert rule of kind {rule_kind!r}")
        self._data_clock = max(ts, self._data_clock or ts)  # not intake or ticks: wall time
        out: list[AlertEvent] = []
        for rule in rules:
            out.extend(self._observe(rule, subject, float(value), ts))
        return out

    def _observe(self, rule: Rule, subject: str, value: float, ts: float) -> list[AlertEvent]:
        key = f"{rule.id}|{subject}"
        tr = self._trackers.get(key)
        if tr is None:
            tr = {"level": 0, "since": {}, "value": value, "at": ts, "alert": None}
            self._trackers[key] = tr
        if ts < tr["at"]:
            return []  # an older measurement never overrides a newer one
        tr["value"], tr["at"] = value, ts
        return self._evaluate(rule, subject, tr, ts)

    def _evaluate(self, rule: Rule, subject: str, tr: dict[str, Any],
                  now: float) -> list[AlertEvent]:
        """Each level keeps its own hysteresis, timed from when the value crossed *that* level:
        it turns on once the value has stayed at or above its ``fire`` for ``min_fire_s`` and
        off once below its ``clear`` for ``min_clear_s`` (one Grafana rule per level does the
        same). A value falling through two levels therefore clears the lower one only after it
        has itself been below its own ``clear`` for the hold. The severity is the highest level
        that is on."""
        levels = self._levels_of(rule, subject)
        since: dict[str, float] = tr.setdefault("since", {})
        wanted = 0
        for k, lv in enumerate(levels, start=1):
            on = k <= tr["level"]
            crossing = tr["value"] < lv.clear if on else tr["value"] >= lv.fire
            flips = False
            if not crossing:
                since.pop(str(k), None)
            else:
                started = since.setdefault(str(k), tr["at"])
                flips = now - started >= (rule.min_clear_s if on else rule.min_fire_s)
            if on != flips:
                wanted = k
        if wanted == tr["level"]:
            self._forget_if_idle(rule, subject, tr)
            return self._remind(rule, subject, tr, tr["at"], on_tick=False)
        return self._apply(rule, subject, tr, levels, wanted, now)

    def _apply(self, rule: Rule, subject: str, tr: dict[str, Any], levels: tuple[Level, ...],
               target: int, now: float) -> list[AlertEvent]:
        previous, tr["level"] = tr["level"], target
        for k in range(min(previous, target) + 1, max(previous, target) + 1):
            tr["since"].pop(str(k), None)  # these levels flipped: their timers are spent
        alert = tr["alert"]
        if previous == 0:
            lv = levels[target - 1]
            alert = {"alert_id": f"{rule.id}:{subject}:{int(now)}", "seq": -1,
                     "state": AlertState.ACTIVE_UNACK.value, "severity": lv.severity,
                     "value": tr["value"], "threshold": lv.fire, "fired_at": now,
                     "escalation_level": 0, "rule_id": rule.id, "subject": subject,
                     "live": False}
            tr["alert"] = alert
            return [self._event(rule, subject, alert, AlertEventKind.FIRED, now)]
        alert["value"] = tr["value"]
        if target == 0:
            acked = alert["state"] == AlertState.ACTIVE_ACK.value
            closed = acked or self._needs_no_review(alert)
            alert["state"] = (AlertState.CLEARED_ACK if closed
                              else AlertState.CLEARED_UNACK).value
            alert["threshold"] = levels[previous - 1].clear
            note = "" if acked or not closed else (
                " (fired in replayed history, never sent: closed without acknowledgement)")
            event = self._event(rule, subject, alert, AlertEventKind.CLEARED, now, note=note)
            tr["alert"] = None
            if not closed:
                self._awaiting_ack[alert["alert_id"]] = alert
            self._forget_if_idle(rule, subject, tr)
            return [event]
        lv = levels[target - 1]
        alert["severity"] = lv.severity
        alert["threshold"] = lv.fire if target > previous else levels[previous - 1].clear
        return [self._event(rule, subject, alert, AlertEventKind.SEVERITY_CHANGED, now)]

    def _forget_if_idle(self, rule: Rule, subject: str, tr: dict[str, Any]) -> None:
        """Drop trackers with nothing to remember, so state stays proportional to alerts."""
        if tr["level"] == 0 and not tr.get("since") and tr["alert"] is None:
            self._trackers.pop(f"{rule.id}|{subject}", None)

    # --- heartbeats, intake, time -------------------------------------------------------------
    def _cadence_s(self, source: str) -> float | None:
        reg = self.registry
        if reg is None:
            return None
        for table in (reg.counters, reg.carparks, reg.stations):
            site = table.get(source)
            if site is not None:
                return float(site.cadence_s)
        return None

    def heartbeat(self, source: str, at: datetime, lane: str | None = None) -> list[AlertEvent]:
        """A source reported (on ``lane``, its topic partition): remember when, and clear its
        dead-sensor alert if it had one."""
        return self.heard(source, _ts(at), lane)

    def heard(self, source: str, ts: float, lane: str | None = None) -> list[AlertEvent]:
        """``heartbeat`` at ``ts`` POSIX seconds (the worker's heartbeat inputs carry them)."""
        if self._started_at is None:
            self._started_at = ts
        self._last_seen[source] = max(ts, self._last_seen.get(source, ts))
        self._data_clock = max(ts, self._data_clock or ts)
        if lane is not None:
            self._lane_of[source] = lane
            if not self.silence_by_feed and ts >= self._lane_clock.get(lane, ts):
                self._lane_lag[lane] = _ts(self.clock()) - ts  # (the wall clock's lanes only)
            self._lane_clock[lane] = max(ts, self._lane_clock.get(lane, ts))
        out: list[AlertEvent] = []
        for rule in self._rules_of("dead_sensor"):
            if f"{rule.id}|{source}" in self._trackers:
                out.extend(self._observe(rule, source, 0.0, ts))
        return out

    def record_intake(self, feed: str, accepted: int, dead_lettered: int,
                      at: datetime) -> list[AlertEvent]:
        """Count records of a feed; judges the dead-letter rate over each rule's window."""
        ts = _ts(at)
        buckets = self._intake.setdefault(feed, [])
        b = ts - ts % BUCKET_S
        if buckets and buckets[-1][0] == b:
            buckets[-1][1] += accepted
            buckets[-1][2] += dead_lettered
        else:
            buckets.append([b, float(accepted), float(dead_lettered)])
            buckets.sort()
        out: list[AlertEvent] = []
        rules = self._rules_of("dead_letter_rate")
        longest = max((r.window_s for r in rules), default=0.0)
        self._intake[feed] = [x for x in buckets if x[0] > ts - longest - BUCKET_S]
        for rule in rules:
            recent = [x for x in self._intake[feed] if x[0] > ts - rule.window_s]
            total = sum(x[1] + x[2] for x in recent)
            if total >= rule.min_events:
                rate = sum(x[2] for x in recent) / total
                out.extend(self._observe(rule, feed, rate, ts))
        return out

    def tick(self, now: datetime) -> list[AlertEvent]:
        """Time passes: dead sensors, due (delayed) fires and clears, escalations."""
        ts = _ts(now)
        if self._started_at is None:
            self._started_at = ts
        out: list[AlertEvent] = []
        for rule in self._rules_of("dead_sensor"):
            out.extend(self._dead_sensors(rule, ts))
        for key, tr in list(self._trackers.items()):
            rule_id, subject = key.split("|", 1)
            rule = self.rules.rule(rule_id)
            if tr.get("since"):
                out.extend(self._evaluate(rule, subject, tr, ts))
            out.extend(self._remind(rule, subject, tr, ts, on_tick=True))
            alert = tr.get("alert")
            if (alert is not None and alert["state"] == AlertState.ACTIVE_UNACK.value
                    and alert.get("live", True)):  # escalate only what someone was sent
                for step in self.rules.escalation_for(rule):
                    due = alert.get("noticed_at", alert["fired_at"]) + step.after_min * 60
                    if step.level > alert["escalation_level"] and ts >= due:
                        alert["escalation_level"] = step.level
                        alert["notify"] = step.notify
                        out.append(self._event(rule, subject, alert, AlertEventKind.ESCALATED,
                                               ts))
        return out

    def _dead_sensors(self, rule: Rule, ts: float) -> list[AlertEvent]:
        reg = self.registry
        if reg is None:
            return []
        out: list[AlertEvent] = []
        for table in (reg.counters, reg.carparks, reg.stations):
            out.extend(self._silent_of(rule, list(table), ts))
        return out

    def _lane_now(self, lane: str, ts: float) -> float:
        """A lane's present: with the event clock its newest report's time; with the wall
        clock ``ts`` less how late its newest report was read. Live, that is a second or two;
        while a worker catches up after an outage it is the backlog's age, so the lane's
        sensors are judged by how far their reports have been read, as with the event clock,
        not found silent for the outage. A lane that stops keeps its last lag and runs at
        wall speed, so its sensors still go silent."""
        if self.silence_by_feed:
            return min(ts, self._lane_clock[lane])
        return ts - max(0.0, self._lane_lag.get(lane, 0.0))

    def _silent_of(self, rule: Rule, sources: list[str], ts: float) -> list[AlertEvent]:
        reg = self.registry
        assert reg is not None
        out: list[AlertEvent] = []
        kind_now = ts
        lanes = [self._lane_now(lane, ts) for lane in
                 {self._lane_of[s] for s in sources if s in self._lane_of}
                 if lane in self._lane_clock]
        # a sensor not heard from on any lane yet may be on the slowest of its kind's lanes
        # (its partition is read behind the others during a replay at speed or a catch-up):
        # it is silent only once every one of them has moved on
        if lanes:
            kind_now = min(ts, min(lanes))
        elif not self.silence_by_feed and self._lane_clock:
            # nothing of this kind read yet: the reading has reached the slowest lane's present
            kind_now = min(ts, min(self._lane_now(lane, ts) for lane in self._lane_clock))
        elif self.silence_by_feed:
            newest = max((self._last_seen[s] for s in sources if s in self._last_seen),
                         default=None)
            if newest is None:
                # nothing of this kind read yet: its clock has not started. A replay can read
                # one feed's first records after another's are minutes of event time on; the
                # data clock is then the other feed's, and every sensor of this kind looked
                # silent since the first record read (20 false dead counters in `make run`)
                return out
            kind_now = min(ts, newest)
        for source in sources:
            cadence = self._cadence_s(source)
            if not cadence:
                continue
            now = kind_now
            lane = self._lane_of.get(source)
            if lane in self._lane_clock:
                now = self._lane_now(lane, ts)
            last = self._last_seen.get(source, self._started_at or now)
            ratio = max(0.0, now - last) / cadence
            levels = levels_for(rule, source, reg)
            if f"{rule.id}|{source}" in self._trackers or ratio >= levels[0].fire:
                # dated where its lane has been read to, not at the tick: found in a backlog
                # it is history, and a report further on in the backlog, newer than that,
                # clears it (a reading at the tick's time would outdate every such report)
                out.extend(self._observe(rule, source, ratio, now))
        return out

    # --- operators -----------------------------------------------------------------------
    def acknowledge(self, alert_id: str, actor: str, at: datetime) -> list[AlertEvent]:
        """An operator takes an alert; acknowledging twice is a no-op (no second event)."""
        ts = _ts(at)
        for key, tr in self._trackers.items():
            alert = tr.get("alert")
            if alert is not None and alert["alert_id"] == alert_id:
                if alert["state"] == AlertState.ACTIVE_ACK.value:
                    return []
                alert["state"] = AlertState.ACTIVE_ACK.value
                rule = self.rules.rule(key.split("|", 1)[0])
                return [self._event(rule, alert["subject"], alert,
                                    AlertEventKind.ACKNOWLEDGED, ts, actor=actor)]
        alert = self._awaiting_ack.pop(alert_id, None)
        if alert is None:
            raise UnknownAlertError(f"no open alert {alert_id!r}")
        alert["state"] = AlertState.CLEARED_ACK.value
        rule = self.rules.rule(alert["rule_id"])
        return [self._event(rule, alert["subject"], alert, AlertEventKind.ACKNOWLEDGED, ts,
                            actor=actor)]

    def active_alerts(self) -> list[dict[str, Any]]:
        """Live alerts and cleared ones awaiting acknowledgement (copies)."""
        live = [dict(t["alert"]) for t in self._trackers.values() if t.get("alert")]
        return live + [dict(a) for a in self._awaiting_ack.values()]

    # --- persistence ---------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-able snapshot of everything the engine remembers."""
        import copy

        return copy.deepcopy({
            "rules_version": self.rules.version, "trackers": self._trackers,
            "awaiting_ack": self._awaiting_ack, "last_seen": self._last_seen,
            "started_at": self._started_at, "intake": self._intake,
            "lane_of": self._lane_of, "lane_clock": self._lane_clock,
            "lane_lag": self._lane_lag})

    def from_state(self, state: dict[str, Any]) -> None:
        """Restore a ``to_state`` snapshot (rules may have changed version in between)."""
        import copy

        s = copy.deepcopy(state)
        known = {r.id for r in self.rules.rules}
        self._trackers = {k: v for k, v in s.get("trackers", {}).items()
                          if k.split("|", 1)[0] in known}
        for tr in self._trackers.values():
            if "since" not in tr:  # a snapshot from before per-level timers: holds restart
                tr.pop("pending_dir", None)
                tr.pop("pending_since", None)
                tr["since"] = {}
        self._awaiting_ack = {k: v for k, v in s.get("awaiting_ack", {}).items()
                              if v.get("rule_id") in known}
        self._last_seen = dict(s.get("last_seen", {}))
        self._lane_of = dict(s.get("lane_of", {}))
        self._lane_clock = dict(s.get("lane_clock", {}))
        self._lane_lag = dict(s.get("lane_lag", {}))  # none in older snapshots: read live
        self._started_at = s.get("started_at")
        self._intake = s.get("intake", {})
