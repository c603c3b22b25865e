"""Structure of the generated boards and alert rules, and the checks that guard it."""

from __future__ import annotations

import copy
import dataclasses

from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.dashboards.check import Report, check_structure, shape_problem
from cityops.dashboards.grafana import DATASOURCE_UID
from cityops.dashboards.provisioning import Bundle, generate
from cityops.dashboards.spec import Format, Panel, Query
from cityops.streams.alerts.rules import Level, RuleSet


def _problems(bundle: Bundle, tz: str) -> list[str]:
    report = Report()
    check_structure(bundle, tz, report)
    assert report.checked > 100  # the checks ran
    return report.problems


def test_generated_boards_and_rules_pass_every_structural_check(
        bundle: Bundle, settings: Settings) -> None:
    assert _problems(bundle, settings.timezone) == []
    assert {b.uid for b in bundle.boards} == {
        "cityops-overview", "cityops-footfall", "cityops-parking", "cityops-air",
        "cityops-safety", "cityops-pipeline"}


def _mutated(bundle: Bundle, fn) -> Bundle:
    dashboards = copy.deepcopy(bundle.dashboards)
    rules = [dataclasses.replace(r, body=copy.deepcopy(r.body)) for r in bundle.rules]
    fn(dashboards, rules)
    return dataclasses.replace(bundle, dashboards=dashboards, rules=rules)


def test_overlapping_panels_are_found(bundle: Bundle, settings: Settings) -> None:
    def overlap(d, _r):
        panels = d["cityops-overview"]["panels"]
        panels[1]["gridPos"] = dict(panels[0]["gridPos"])
    assert any("overlaps" in p for p in _problems(_mutated(bundle, overlap), settings.timezone))


def test_an_undefined_variable_and_a_foreign_datasource_are_found(
        bundle: Bundle, settings: Settings) -> None:
    def break_it(d, _r):
        target = d["cityops-parking"]["panels"][0]["targets"][0]
        target["rawSql"] += " AND x IN (${district:csv})"
        target["datasource"]["uid"] = "someone-else"
    problems = _problems(_mutated(bundle, break_it), settings.timezone)
    assert any("undefined {'district'}" in p for p in problems)
    assert any("datasource uid" in p for p in problems)


def test_a_broken_alert_chain_and_browser_syntax_in_an_alert_are_found(
        bundle: Bundle, settings: Settings) -> None:
    def break_it(_d, rules):
        rules[0].body["data"][2]["model"]["expression"] = "Z"
        rules[1].body["condition"] = "Q"
        rules[2].body["data"][0]["model"]["rawSql"] += " AND $__conditionalAll(a, $zone)"
    problems = _problems(_mutated(bundle, break_it), settings.timezone)
    assert any("expression refers to nothing" in p for p in problems)
    assert any("condition Q missing" in p for p in problems)
    assert any("browser-only syntax" in p for p in problems)


def test_every_query_points_at_the_provisioned_datasource(bundle: Bundle) -> None:
    for d in bundle.dashboards.values():
        for p in d["panels"]:
            assert p["datasource"]["uid"] == DATASOURCE_UID
            for t in p["targets"]:
                assert t["datasource"] == {"type": "grafana-clickhouse-datasource",
                                           "uid": DATASOURCE_UID}
                assert t["editorType"] == "sql" and t["format"] in (0, 1)


def test_the_time_zone_comes_from_the_settings(registry: Registry, rules: RuleSet) -> None:
    other = generate(Settings(timezone="Asia/Urumqi"), registry, rules)
    assert {d["timezone"] for d in other.dashboards.values()} == {"Asia/Urumqi"}


def test_live_boards_refresh_every_few_seconds(bundle: Bundle) -> None:
    live = {b.uid: b.refresh for b in bundle.boards if b.refresh.endswith("s")}
    assert set(live) >= {"cityops-overview", "cityops-parking", "cityops-safety",
                         "cityops-pipeline"}
    assert all(5 <= int(r[:-1]) <= 10 for r in live.values())


def test_a_changed_threshold_changes_boards_and_grafana_rules(
        settings: Settings, registry: Registry, rules: RuleSet) -> None:
    rule = rules.rule("carpark_full")
    changed = RuleSet(version=rules.version, escalation=rules.escalation, rules=tuple(
        r if r.id != "carpark_full" else r.model_copy(update={"levels": (
            Level(severity="warning", fire=0.85, clear=0.8),)}) for r in rules.rules))
    before, after = generate(settings, registry, rules), generate(settings, registry, changed)
    old_rule = next(r for r in before.rules if r.rule.id == rule.id)
    new_rule = next(r for r in after.rules if r.rule.id == rule.id)
    assert "value >= 0.95" in old_rule.sql and "value >= 0.85" in new_rule.sql
    assert "value >= 0.8," in new_rule.sql
    steps = after.dashboards["cityops-parking"]["panels"][0]["fieldConfig"]["defaults"][
        "thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 0.85]


def test_registry_density_thresholds_reach_the_board_and_the_rule(bundle: Bundle) -> None:
    # Hongyadong's own thresholds (registry: 1.5 / 2.5) override the rule's 2.0 / 4.0
    import re

    sql = bundle.boards[0].panel("density").queries[0].sql
    warn, crit = re.findall(r"transform\(toString\(w\.zone_id\), \[([^\]]*)\], \[([^\]]*)\]",
                            sql)
    for (names, values), want in ((warn, 1.5), (crit, 2.5)):
        by_zone = dict(zip([n.strip(" '") for n in names.split(",")],
                           [float(v) for v in values.split(",")], strict=True))
        assert by_zone["hongyadong"] == want
    warning = next(r for r in bundle.rules if r.uid == "cityops-crowd_density-warning")
    assert "['hongyadong'], [1.5]" in warning.sql and "['hongyadong'], [1.2]" in warning.sql


def test_shape_rules_per_panel_type() -> None:
    import pandas

    stat = Panel("s", "统计", "Stat", "stat", (Query("x"),), (0, 0, 1, 1))
    two = pandas.DataFrame({"v": [1, 2]})
    assert "one row" in shape_problem(stat, stat.queries[0], two)
    assert shape_problem(stat, stat.queries[0], two.head(1)) is None
    ts = Panel("t", "序列", "Series", "timeseries", (Query("x", Format.TIME_SERIES),),
               (0, 0, 1, 1))
    bad = pandas.DataFrame({"t": pandas.to_datetime(["2026-01-01"]), "v": [1]})
    assert "first datetime column 'time'" in shape_problem(ts, ts.queries[0], bad)
    geo = Panel("g", "地图", "Map", "geomap", (Query("x"),), (0, 0, 1, 1))
    assert "latitude" in shape_problem(geo, geo.queries[0], pandas.DataFrame({"lat": [1.0]}))
    heat = Panel("h", "热图", "Heat", "heatmap", (Query("x"),), (0, 0, 1, 1))
    assert shape_problem(heat, heat.queries[0],
                         pandas.DataFrame({"x": [1], "y": [2], "v": [3]})) is None
    assert "no rows" in shape_problem(heat, heat.queries[0], pandas.DataFrame())
