"""Macro expansion against the ClickHouse plugin's documented examples (v4.19+) and sqlutil."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cityops.dashboards.exceptions import MacroError
from cityops.dashboards.macros import (
    ALL,
    QueryContext,
    auto_interval_ms,
    expand,
    expand_backend,
    expand_frontend,
    format_interval,
    frontend_only_syntax,
    variables_used,
)

# the plugin README's examples use these range ends
FROM = datetime.fromtimestamp(1415792726.123, UTC)
TO = datetime.fromtimestamp(1447328726.456, UTC)


def ctx(interval_ms: int = 20_000, **variables: object) -> QueryContext:
    return QueryContext(FROM, TO, interval_ms, variables)  # type: ignore[arg-type]


@pytest.mark.parametrize(("sql", "expected"), [
    ("$__timeFilter(time)", "time >= toDateTime(1415792726) AND time <= toDateTime(1447328726)"),
    ("$__timeFilter_ms(time)", "time >= fromUnixTimestamp64Milli(1415792726123) AND "
                               "time <= fromUnixTimestamp64Milli(1447328726456)"),
    ("$__fromTime", "toDateTime(1415792726)"),
    ("$__toTime", "toDateTime(1447328726)"),
    ("$__fromTime_ms", "fromUnixTimestamp64Milli(1415792726123)"),
    ("$__toTime_ms", "fromUnixTimestamp64Milli(1447328726456)"),
    ("$__timeInterval(columnName)",
     "toStartOfInterval(toDateTime(columnName), INTERVAL 20 second)"),
    ("$__interval_s", "20"),
    ("$__timeFrom(t)", "t >= '2014-11-12T11:45:26Z'"),
    ("$__timeTo(t)", "t <= '2015-11-12T11:45:26Z'"),
])
def test_documented_examples(sql: str, expected: str) -> None:
    assert expand_backend(sql, ctx()) == expected


def test_time_interval_ms_uses_the_interval_in_milliseconds() -> None:
    assert expand_backend("$__timeInterval_ms(columnName)", ctx(20)) == \
        "toStartOfInterval(toDateTime64(columnName, 3), INTERVAL 20 millisecond)"


def test_interval_seconds_are_at_least_one() -> None:
    assert expand_backend("$__interval_s $__timeInterval(c)", ctx(500)) == \
        "1 toStartOfInterval(toDateTime(c), INTERVAL 1 second)"


def test_date_filter_matches_the_documented_example() -> None:
    c = QueryContext(datetime(2022, 10, 21, 8, tzinfo=UTC), datetime(2022, 10, 23, 9, tzinfo=UTC))
    assert expand_backend("$__dateFilter(date)", c) == \
        "date >= toDate('2022-10-21') AND date <= toDate('2022-10-23')"


def test_date_time_filter_and_its_alias_dt() -> None:
    want = ("(d >= toDate('2014-11-12') AND d <= toDate('2015-11-12')) AND "
            "(t >= toDateTime(1415792726) AND t <= toDateTime(1447328726))")
    assert expand_backend("$__dateTimeFilter(d, t)", ctx()) == want
    assert expand_backend("$__dt(d, t)", ctx()) == want


def test_time_group_is_sqlutils_datepart_list_and_empty_for_durations() -> None:
    assert expand_backend("$__timeGroup(t, month)", ctx()) == \
        "datepart(month, t),datepart(year, t)"
    assert expand_backend("$__timeGroup(t, 5m)", ctx()) == ""


def test_longer_macro_names_win_and_interval_text_follows_grafana() -> None:
    assert expand_backend("$__interval_s|$__interval_ms|$__interval", ctx(60_000)) == \
        "60|60000|1m"
    assert [format_interval(x) for x in (500, 20_000, 90_000, 3_600_000, 86_400_000)] == \
        ["500ms", "20s", "1m", "1h", "1d"]


def test_nested_parentheses_stay_inside_one_argument() -> None:
    sql = "$__timeFilter(toDateTime(event_time - toIntervalSecond(interval_s)))"
    assert expand_backend(sql, ctx()).startswith(
        "toDateTime(event_time - toIntervalSecond(interval_s)) >= toDateTime(1415792726)")


@pytest.mark.parametrize("sql", ["$__timeFilter(a, b)", "$__timeInterval(a, b)", "$__dt(a)",
                                 "$__timeFilter(a"])
def test_bad_arguments_are_a_clear_error(sql: str) -> None:
    with pytest.raises(MacroError):
        expand_backend(sql, ctx())


def test_conditional_all_on_all_and_on_a_selection() -> None:
    sql = "WHERE $__conditionalAll(zone_id IN (${zone:singlequote}), $zone)"
    assert expand(sql, ctx(zone=ALL)) == "WHERE 1=1"
    assert expand(sql, ctx(zone=["a", "b'c"])) == "WHERE zone_id IN ('a','b\\'c')"
    assert expand(sql, ctx(zone=["jfb"])) == "WHERE zone_id IN ('jfb')"


def test_variables_format_and_all_outside_conditional_all() -> None:
    assert expand_frontend("$zone", ctx(zone=["a", "b"])) == "{a,b}"
    assert expand_frontend("${zone:csv}", ctx(zone=["a", "b"])) == "a,b"
    assert expand_frontend("${zone:sqlstring}", ctx(zone=["o'k"])) == "'o''k'"
    assert expand_frontend("${zone:singlequote}", ctx(zone=ALL), {"zone": ["x", "y"]}) == \
        "'x','y'"
    with pytest.raises(MacroError, match="options are unknown"):
        expand_frontend("${zone:singlequote}", ctx(zone=ALL))
    with pytest.raises(MacroError, match="not defined"):
        expand_frontend("$nope", ctx())


def test_builtins_of_the_browser_step() -> None:
    assert expand_frontend("$__from $__to $__interval $__range_s", ctx(60_000)) == \
        "1415792726123 1447328726456 1m 31536000"


def test_browser_only_syntax_is_found_for_alert_rules() -> None:
    assert frontend_only_syntax("SELECT 1 WHERE $__timeFilter(t)") == []
    found = frontend_only_syntax("WHERE $__conditionalAll(z IN (${zone:csv}), $zone) $__from")
    assert "$__conditionalAll" in found and "$zone" in found and "$__from" in found
    assert variables_used("$zone ${carpark:csv} $__timeFilter(t)") == {"zone", "carpark"}


def test_auto_interval_rounds_like_grafana() -> None:
    assert auto_interval_ms(3600) == 5000  # 1 h / 1000 points = 3.6 s → 5 s
    assert auto_interval_ms(7 * 86400) == 600_000  # 604.8 s → 10 min
    assert auto_interval_ms(60, min_ms=1000) == 1000


def test_ranges_must_be_aware_and_ordered() -> None:
    with pytest.raises(MacroError):
        QueryContext(datetime(2026, 1, 1), datetime(2026, 1, 2))
    with pytest.raises(MacroError):
        QueryContext(TO, FROM)
