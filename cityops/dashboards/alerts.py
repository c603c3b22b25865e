"""Grafana-managed alert rules generated from the stream alert engine's rules file.

One Grafana rule per (rule, level). Query A (ClickHouse, backend macros only: Grafana's alert
evaluator has no browser step) returns one row per alerting subject with a ``signal``: 2 when the
value reaches the level's ``fire`` threshold, 1 while it is at or above ``clear``, 0 below. B
reduces it to the last value per series; C is a threshold expression firing at ``B > 1.5`` with a
recovery threshold ``B < 0.5`` (Grafana's custom recovery threshold), which is exactly the
engine's hysteresis. ``min_fire_s`` becomes ``for`` and ``min_clear_s`` ``keepFiringFor``.
Per-subject thresholds (registry zones, ``subjects``, ``by_type``) are resolved here with the
engine's own ``levels_for`` and written into the SQL, so a changed threshold changes both.

The SDK builds the HTTP-API shape; ``to_provisioning`` adapts it to Grafana's file-provisioning
format (group-level ``folder`` title and string ``interval``, ``for`` / ``keepFiringFor`` strings,
no per-rule ``folderUID`` / ``orgID`` / ``ruleGroup``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import alerting as ab
from grafana_foundation_sdk.builders import expr as eb
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as am
from grafana_foundation_sdk.models import dashboard as dm

from cityops.core.registry import CarPark, Counter, Registry, Station
from cityops.dashboards.boards import FEEDS, incident_fresh_clause
from cityops.dashboards.grafana import (
    DATASOURCE_UID,
    FOLDER_TITLE,
    FOLDER_UID,
    ClickHouseQuery,
)
from cityops.dashboards.spec import Format, Query
from cityops.streams.alerts.machine import BUCKET_S
from cityops.streams.alerts.rules import INCIDENT_SEVERITY_RANK, Level, Rule, RuleSet, levels_for

EXPR_UID = "__expr__"
FIRE_ABOVE = 1.5
RECOVER_BELOW = 0.5
RECEIVER_WEBHOOK = "cityops-webhook"
RECEIVER_WECOM = "cityops-wecom"
RECEIVER_DINGTALK = "cityops-dingtalk"
#: per kind: (lookback seconds of query A, SQL returning subject and value)
_LOOKBACK_S = {"crowd_density": 600, "carpark_occupancy": 1800, "aqi": 3 * 3600,
               "incident": 7 * 86400, "dead_sensor": 3 * 86400, "dead_letter_rate": 3600}


def _subjects(rule: Rule, registry: Registry) -> list[str]:
    if rule.kind == "crowd_density":
        return sorted(registry.zones)
    if rule.kind == "dead_sensor":
        return sorted([*registry.counters, *registry.carparks, *registry.stations])
    return sorted(rule.subjects)


def _threshold(rule: Rule, registry: Registry, index: int, which: str, col: str) -> str:
    """The level's fire/clear threshold for the subject in ``col``, as SQL."""
    default: Level = rule.levels[index]
    subjects, values = [], []
    for s in _subjects(rule, registry):
        levels = levels_for(rule, s, registry)
        lv = levels[index] if index < len(levels) else None
        v = getattr(lv, which) if lv is not None else float("inf")
        if v != getattr(default, which):
            subjects.append(s)
            values.append(v)
    if not subjects:
        return f"{getattr(default, which):g}"
    names = "[" + ", ".join(f"'{s}'" for s in subjects) + "]"
    nums = "[" + ", ".join("inf" if v == float("inf") else f"{v:g}" for v in values) + "]"
    return f"transform(toString({col}), {names}, {nums}, {getattr(default, which):g})"


def value_sql(rule: Rule, registry: Registry, incident_expire_after_s: float) -> str:
    """Subject and observed value per subject at ``$__toTime`` — what the engine observes.

    An incident is open until its closing update or, while incidents expire
    (``incident_expire_after_s`` > 0), until it has gone that long without an update: the
    stream then closes it as ``expired`` and the engine's alert clears."""
    if rule.kind == "crowd_density":
        return ("SELECT zone_id AS subject, argMax(density_ppm2, (window_end, revision)) AS value "
                "FROM footfall_windows WHERE window = 'tumbling_1m' AND $__timeFilter(window_end) "
                "AND emitted_at <= $__toTime GROUP BY zone_id")
    if rule.kind == "carpark_occupancy":
        return ("SELECT carpark_id AS subject, argMax(occupancy_rate, event_time) AS value "
                "FROM parking_states WHERE $__timeFilter(event_time) AND emitted_at <= $__toTime "
                "GROUP BY carpark_id")
    if rule.kind == "aqi":
        return ("SELECT station_id AS subject, argMax(aqi, (hour_start, revision)) AS value "
                "FROM air_quality_index WHERE averaging = '1h' AND aqi IS NOT NULL "
                "AND $__timeFilter(hour_start) AND emitted_at <= $__toTime GROUP BY station_id")
    if rule.kind == "incident":
        ranks = sorted(INCIDENT_SEVERITY_RANK.items(), key=lambda kv: kv[1])
        names = "[" + ", ".join(f"'{k}'" for k, _ in ranks) + "]"
        nums = "[" + ", ".join(f"{v:g}" for _, v in ranks) + "]"
        order = "['reported', 'dispatched', 'on_scene', 'resolved', 'cancelled']"
        fresh = incident_fresh_clause(incident_expire_after_s)
        return (f"SELECT incident_id AS subject, if(max(indexOf({order}, status)) <= 3{fresh}, "
                f"transform(toString(argMax(severity, event_time)), {names}, {nums}, 0), 0) "
                "AS value FROM incidents_reported WHERE $__timeFilter(event_time) "
                "GROUP BY incident_id")
    if rule.kind == "dead_sensor":
        sources: list[Counter | CarPark | Station] = [
            *registry.counters.values(), *registry.carparks.values(),
                   *registry.stations.values()]
        ids = "[" + ", ".join(f"'{s.id}'" for s in sources) + "]"
        cad = "[" + ", ".join(f"{float(s.cadence_s):g}" for s in sources) + "]"
        union = " UNION ALL ".join(
            f"SELECT toString(source) AS source, max(event_time) AS seen FROM {t} "
            "WHERE $__timeFilter(event_time) GROUP BY source" for _, t in FEEDS)
        return (f"SELECT s.subject AS subject, dateDiff('second', ifNull(max(u.seen), $__fromTime)"
                f", $__toTime) / transform(s.subject, {ids}, {cad}, 1.) AS value "
                f"FROM (SELECT arrayJoin({ids}) AS subject) AS s "
                f"LEFT JOIN ({union}) AS u ON u.source = s.subject GROUP BY s.subject")
    if rule.kind == "dead_letter_rate":
        # the engine counts records in BUCKET_S buckets and keeps those starting inside the
        # window: the same buckets here, so both judge the same records
        w, b = int(rule.window_s), int(BUCKET_S)

        def recent(col: str) -> str:
            return (f"{col} >= $__toTime - INTERVAL {w + b} SECOND AND {col} <= $__toTime AND "
                    f"toStartOfInterval({col}, INTERVAL {b} SECOND) > "
                    f"$__toTime - INTERVAL {w} SECOND")

        raw = " UNION ALL ".join(
            f"SELECT '{f}' AS feed, count() AS n FROM {t} WHERE event_time >= $__toTime - "
            f"INTERVAL {w} SECOND - INTERVAL 1 HOUR AND event_time <= $__toTime AND "
            f"{recent('ingested_at')}" for f, t in FEEDS)
        return (f"SELECT a.feed AS subject, ifNull(d.n, 0) / (a.n + ifNull(d.n, 0)) AS value "
                f"FROM ({raw}) AS a LEFT JOIN (SELECT feed, count() AS n FROM dead_letters "
                f"WHERE {recent('received_at')} GROUP BY feed) AS d ON d.feed = a.feed "
                f"WHERE a.n + ifNull(d.n, 0) >= {rule.min_events}")
    raise ValueError(f"no Grafana query for rule kind {rule.kind!r}")  # pragma: no cover


def signal_sql(rule: Rule, registry: Registry, index: int,
               incident_expire_after_s: float) -> str:
    """Query A of the level ``index`` rule: subject and 2 / 1 / 0 (fire / hold / clear)."""
    fire = _threshold(rule, registry, index, "fire", "subject")
    clear = _threshold(rule, registry, index, "clear", "subject")
    return (f"SELECT subject, multiIf(value >= {fire}, 2, value >= {clear}, 1, 0) AS signal\n"
            f"FROM ({value_sql(rule, registry, incident_expire_after_s)})\nORDER BY subject")


@dataclass(frozen=True)
class GrafanaRule:
    """One generated rule, with what ``check`` and the evaluator need next to its JSON."""

    uid: str
    rule: Rule
    level_index: int
    sql: str
    lookback_s: int
    body: dict[str, Any]

    @property
    def severity(self) -> str:
        return self.rule.levels[self.level_index].severity


def _duration(seconds: float) -> str:
    return f"{int(seconds)}s"


def build_rules(rules: RuleSet, registry: Registry,
                incident_expire_after_s: float) -> list[GrafanaRule]:
    """Every (rule, level) as an SDK alert rule (HTTP-API shape) plus its parts."""
    out = []
    for rule in rules.rules:
        for i, lv in enumerate(rule.levels):
            uid = f"cityops-{rule.id}-{lv.severity}"[:40]
            sql = signal_sql(rule, registry, i, incident_expire_after_s)
            lookback = _LOOKBACK_S[rule.kind]
            if rule.kind == "incident":  # an incident open longer than that is still open
                lookback = max(lookback, int(incident_expire_after_s))
            a = (ab.Query("A").datasource_uid(DATASOURCE_UID)
                 .relative_time_range(am.RelativeTimeRange(from_val=lookback, to=0))
                 .model(ClickHouseQuery(Query(sql, Format.TABLE, ref_id="A"))))
            b = (ab.Query("B").datasource_uid(EXPR_UID)
                 .relative_time_range(am.RelativeTimeRange(from_val=lookback, to=0))
                 .model(eb.TypeReduce().ref_id("B").expression("A").reducer("last")
                        .datasource(dm.DataSourceRef(type_val="__expr__", uid=EXPR_UID))))
            c = (ab.Query("C").datasource_uid(EXPR_UID)
                 .relative_time_range(am.RelativeTimeRange(from_val=lookback, to=0))
                 .model(eb.TypeThreshold().ref_id("C").expression("B")
                        .datasource(dm.DataSourceRef(type_val="__expr__", uid=EXPR_UID))
                        .conditions([eb.ExprTypeThresholdConditions()
                                     .evaluator(eb.ExprTypeThresholdConditionsEvaluator()
                                                .type("gt").params([FIRE_ABOVE]))
                                     .unload_evaluator(
                                         eb.ExprTypeThresholdConditionsUnloadEvaluator()
                                         .type("lt").params([RECOVER_BELOW]))])))
            r = (ab.Rule(f"{rule.title} · {lv.severity}").uid(uid).condition("C")
                 .queries([a, b, c]).folder_uid(FOLDER_UID).rule_group(f"cityops-{rule.kind}")
                 .for_val(_duration(rule.min_fire_s)).no_data_state("OK")
                 .exec_err_state("Error").org_id(1)
                 .labels({"severity": lv.severity, "rule_id": rule.id, "source": "cityops",
                          "rules_version": rules.version})
                 .annotations({
                     "summary": f"{rule.title} {lv.severity}: {{{{ $labels.subject }}}} "
                                f"at or above the {lv.severity} threshold ({rule.unit})",
                     "description": f"Generated from the cityops alert rules {rules.version}, "
                                    f"rule {rule.id}; fires at ≥ fire, clears below clear "
                                    f"(hysteresis) after {rule.min_clear_s:g} s."}))
            body = json.loads(json.dumps(r.build(), cls=JSONEncoder))
            body["keepFiringFor"] = _duration(rule.min_clear_s)
            out.append(GrafanaRule(uid, rule, i, sql, lookback, body))
    return out


def to_provisioning(rules: list[GrafanaRule], interval_s: int) -> dict[str, Any]:
    """Grafana's alert-rule file-provisioning document (``apiVersion: 1``, ``groups``)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for gr in rules:
        b = gr.body
        rule = {"uid": b["uid"], "title": b["title"], "condition": b["condition"],
                "data": [{"refId": q["refId"], "relativeTimeRange": {
                    "from": int(q["relativeTimeRange"]["from"]),
                    "to": int(q["relativeTimeRange"]["to"])},
                    "datasourceUid": q["datasourceUid"], "model": q["model"]}
                    for q in b["data"]],
                "noDataState": b["noDataState"], "execErrState": b["execErrState"],
                "for": b["for"], "keepFiringFor": b["keepFiringFor"],
                "labels": b.get("labels", {}), "annotations": b.get("annotations", {}),
                "isPaused": False}
        groups.setdefault(b["ruleGroup"], []).append(rule)
    return {"apiVersion": 1, "groups": [
        {"orgId": 1, "name": name, "folder": FOLDER_TITLE, "interval": _duration(interval_s),
         "rules": rs} for name, rs in sorted(groups.items())]}


def contact_points() -> list[dict[str, Any]]:
    """Webhook (JSON), WeCom and DingTalk robots; URLs from the Grafana container's env."""
    cps = [
        ab.ContactPoint().name(RECEIVER_WEBHOOK).type("webhook").uid("cityops-webhook")
        .settings({"url": "$GRAFANA_ALERT_WEBHOOK_URL", "httpMethod": "POST"}),
        ab.ContactPoint().name(RECEIVER_WECOM).type("wecom").uid("cityops-wecom")
        .settings({"url": "$GRAFANA_ALERT_WECOM_URL"}),
        ab.ContactPoint().name(RECEIVER_DINGTALK).type("dingding").uid("cityops-dingtalk")
        .settings({"url": "$GRAFANA_ALERT_DINGTALK_URL", "msgType": "markdown"}),
    ]
    return [json.loads(json.dumps(c.build(), cls=JSONEncoder)) for c in cps]


def policy() -> dict[str, Any]:
    """Everything to the webhook; major and critical also to WeCom; critical also to DingTalk."""
    p = (ab.NotificationPolicy().receiver(RECEIVER_WEBHOOK).group_by(["alertname", "subject"])
         .group_wait("10s").group_interval("1m").repeat_interval("4h")
         .routes([
             ab.NotificationPolicy().receiver(RECEIVER_WECOM).continue_val(True)
             .object_matchers([["source", "=", "cityops"], ["severity", "=~", "major|critical"]]),
             ab.NotificationPolicy().receiver(RECEIVER_DINGTALK).continue_val(True)
             .object_matchers([["source", "=", "cityops"], ["severity", "=", "critical"]]),
         ]))
    return json.loads(json.dumps(p.build(), cls=JSONEncoder))


def notifications_provisioning() -> dict[str, Any]:
    """Contact points and the notification policy tree in file-provisioning format."""
    receivers = []
    for cp in contact_points():
        receivers.append({"orgId": 1, "name": cp["name"], "receivers": [
            {"uid": cp["uid"], "type": cp["type"], "settings": cp["settings"],
             "disableResolveMessage": False}]})
    return {"apiVersion": 1, "contactPoints": receivers,
            "policies": [{"orgId": 1, **policy()}]}
