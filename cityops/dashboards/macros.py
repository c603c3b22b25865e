"""The Grafana ClickHouse plugin's query macros, expanded in Python (plugin v4.19 and later).

Grafana expands a panel query in two steps, and so do we:

1. **In the browser** (``expand_frontend``): the plugin replaces ``$__conditionalAll(cond,
   $var)`` by ``1=1`` when ``$var`` selects *All*, else by ``cond``; then Grafana's template
   service replaces ``$var`` / ``${var}`` / ``${var:format}`` and the built-ins ``$__interval``,
   ``$__interval_ms``, ``$__from``, ``$__to``, ``$__range_s``. Alert rules skip this step (they
   run in Grafana's backend only), so an alert query must use none of it.
2. **In the plugin's backend** (``expand_backend``): Grafana's sqlutil ``Interpolate`` merges its
   default macros with the plugin's, applies them longest name first, finds ``$__name\\b`` and
   a bracketed argument list (nesting allowed, split on top-level commas, trimmed):

   * ``$__timeFilter(c)`` → ``c >= toDateTime(<from s>) AND c <= toDateTime(<to s>)``;
     ``$__timeFilter_ms(c)`` the same with ``fromUnixTimestamp64Milli(<ms>)``;
   * ``$__dateFilter(c)`` → ``c >= toDate('<from>') AND c <= toDate('<to>')``;
   * ``$__dateTimeFilter(d, t)`` and its alias ``$__dt`` → ``(<dateFilter d>) AND
     (<timeFilter t>)``;
   * ``$__fromTime`` / ``$__toTime`` → ``toDateTime(<s>)``; ``_ms`` → ``fromUnixTimestamp64Milli``;
   * ``$__timeInterval(c)`` → ``toStartOfInterval(toDateTime(c), INTERVAL <s, min 1> second)``;
     ``$__timeInterval_ms(c)`` → ``toStartOfInterval(toDateTime64(c, 3), INTERVAL <ms>
     millisecond)``; ``$__interval_s`` → the interval in whole seconds, at least 1;
   * sqlutil's defaults: ``$__timeFrom(c)`` / ``$__timeTo(c)`` → ``c >= '<RFC 3339 UTC>'`` /
     ``c <= '…'``; ``$__timeGroup(c, unit)`` → a ``datepart(…)`` list for minute … year and
     nothing for any other unit (``5m``): ClickHouse has no ``datepart``, so boards never use
     it; ``$__interval`` / ``$__interval_ms`` → Grafana's interval text (``1m``) / ms.

   Dates of ``$__dateFilter`` are the UTC dates of the range ends (Go formats the UTC time).

Sources: grafana/clickhouse-datasource ``pkg/macros/macros.go`` and its documented examples;
grafana-plugin-sdk-go ``data/sqlutil/macros.go``; the plugin's ``applyConditionalAll``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cityops.dashboards.exceptions import MacroError

#: the value a multi-value variable holds when *All* is selected and no custom all value is set
ALL = "$__all"

_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(?!__)(\w+)")
_BUILTIN = re.compile(r"\$__(interval_ms|interval|from|to|range_s)\b(?!\()")


@dataclass(frozen=True)
class QueryContext:
    """What Grafana knows when it runs a query: the range, the interval, the variables."""

    start: datetime
    end: datetime
    interval_ms: int = 60_000
    variables: Mapping[str, Sequence[str] | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise MacroError("query ranges must be timezone-aware")
        if self.end < self.start:
            raise MacroError("the range ends before it starts")

    @property
    def range_s(self) -> float:
        return (self.end - self.start).total_seconds()


# --- Grafana's interval -------------------------------------------------------------------------

#: Grafana's ``roundInterval`` steps: (upper bound ms, rounded ms) — rangeutil.ts
_ROUND = ((10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500),
          (1500, 1000), (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000),
          (25000, 20000), (45000, 30000), (90000, 60000), (450000, 300000), (1050000, 600000),
          (2100000, 1800000), (5400000, 3600000), (9000000, 7200000), (16200000, 10800000),
          (32400000, 21600000), (86400000, 43200000), (604800000, 86400000),
          (1814400000, 604800000), (3628800000, 2592000000))


def auto_interval_ms(range_s: float, max_data_points: int = 1000, min_ms: int = 1000) -> int:
    """Grafana's auto interval: range / max data points, rounded to a nice step, ≥ ``min_ms``."""
    raw = range_s * 1000 / max(1, max_data_points)
    for bound, rounded in _ROUND:
        if raw < bound:
            return max(rounded, min_ms)
    return max(31536000000, min_ms)


def format_interval(ms: int) -> str:
    """Grafana's interval text (gtime.FormatInterval, truncating): ``500ms``, ``20s``, ``1h``."""
    for unit, size in (("y", 31536000000), ("d", 86400000), ("h", 3600000), ("m", 60000),
                       ("s", 1000), ("ms", 1)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return "1ms"


# --- step 1: browser ----------------------------------------------------------------------------

def _args(text: str, start: int) -> tuple[list[str], int]:
    """Bracketed arguments at ``text[start]`` (sqlutil ``parseArgs``); (args, end index)."""
    if start >= len(text) or text[start] != "(":
        return [], start
    depth = 0
    arg: list[str] = []
    args: list[str] = []
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "(":
            depth += 1
            if depth == 1:
                continue
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append("".join(arg).strip())
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append("".join(arg).strip())
            arg = []
            continue
        arg.append(ch)
    raise MacroError("failed to parse macro arguments (missing close bracket?)")


def _values(ctx: QueryContext, name: str) -> Sequence[str] | str:
    if name not in ctx.variables:
        raise MacroError(f"template variable ${name} is not defined")
    return ctx.variables[name]


def _is_all(value: Sequence[str] | str) -> bool:
    return value == ALL or (not isinstance(value, str) and list(value) == [ALL])


def _format(values: list[str], fmt: str | None) -> str:
    """Grafana's variable formats that SQL panels use."""
    if fmt in ("singlequote", "sqlstring"):
        esc = (lambda v: v.replace("'", "\\'")) if fmt == "singlequote" else (
            lambda v: v.replace("'", "''"))
        return ",".join(f"'{esc(v)}'" for v in values)
    if fmt in ("csv",):
        return ",".join(values)
    if fmt in ("raw", None):
        if fmt is None and len(values) > 1:
            return "{" + ",".join(values) + "}"  # Grafana's default multi-value format (glob)
        return ",".join(values)
    if fmt == "doublequote":
        return ",".join(f'"{v}"' for v in values)
    raise MacroError(f"unsupported variable format {fmt!r}")


def conditional_all(sql: str, ctx: QueryContext) -> str:
    """``$__conditionalAll(cond, $var)`` → ``1=1`` on *All* (or empty), else ``cond``."""
    out, pos, key = [], 0, "$__conditionalAll"
    while (i := sql.find(key, pos)) >= 0:
        args, end = _args(sql, i + len(key))
        if len(args) != 2:
            raise MacroError("Macro $__conditionalAll should contain 2 parameters")
        var = args[1].strip()
        m = re.fullmatch(r"\$\{?(\w+)\}?", var)
        phrase = args[0]
        if m:
            value = _values(ctx, m.group(1))
            if _is_all(value) or value in ("", []):
                phrase = "1=1"
        out.append(sql[pos:i] + phrase)
        pos = end
    out.append(sql[pos:])
    return "".join(out)


def expand_frontend(sql: str, ctx: QueryContext, all_options: Mapping[str, Sequence[str]]
                    | None = None) -> str:
    """Step 1: conditional-all, template variables and Grafana's built-in variables."""
    sql = conditional_all(sql, ctx)
    options = all_options or {}

    def var(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        value = _values(ctx, name)
        if _is_all(value):
            if name not in options:
                raise MacroError(f"${name} is All and its options are unknown; wrap its use in "
                                 "$__conditionalAll")
            values = list(options[name])
        else:
            values = [value] if isinstance(value, str) else list(value)
        return _format(values, m.group(2))

    sql = _VAR.sub(var, sql)

    def builtin(m: re.Match[str]) -> str:
        name = m.group(1)
        if name == "interval":
            return format_interval(ctx.interval_ms)
        if name == "interval_ms":
            return str(ctx.interval_ms)
        if name == "from":
            return str(int(ctx.start.timestamp() * 1000))
        if name == "to":
            return str(int(ctx.end.timestamp() * 1000))
        return str(int(ctx.range_s))

    return _BUILTIN.sub(builtin, sql)


# --- step 2: the plugin's backend ---------------------------------------------------------------

def _s(t: datetime) -> str:
    return f"toDateTime({math.floor(t.timestamp())})"


def _ms(t: datetime) -> str:
    return f"fromUnixTimestamp64Milli({math.floor(t.timestamp() * 1000)})"


def _date(t: datetime) -> str:
    return f"toDate('{t.astimezone(UTC):%Y-%m-%d}')"


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _need(name: str, args: list[str], n: int) -> None:
    if len(args) != n:
        raise MacroError(f"$__{name}: unexpected number of arguments: expected {n} "
                         f"argument{'s' if n != 1 else ''}, received {len(args)}")


def _interval_s(ctx: QueryContext) -> int:
    return int(max(ctx.interval_ms / 1000, 1))


def _time_group(args: list[str]) -> str:
    units = ["minute", "hour", "day", "month", "year"]
    if args[1] not in units:
        return ""
    return ",".join(f"datepart({u}, {args[0]})" for u in units[units.index(args[1]):])


def _macro(name: str, args: list[str], ctx: QueryContext) -> str:
    a, b = ctx.start, ctx.end
    if name in ("timeFilter", "timeFilter_ms", "dateFilter"):
        _need(name, args, 1)
        f = {"timeFilter": _s, "timeFilter_ms": _ms, "dateFilter": _date}[name]
        return f"{args[0]} >= {f(a)} AND {args[0]} <= {f(b)}"
    if name in ("dateTimeFilter", "dt"):
        _need(name, args, 2)
        return (f"({args[0]} >= {_date(a)} AND {args[0]} <= {_date(b)}) AND "
                f"({args[1]} >= {_s(a)} AND {args[1]} <= {_s(b)})")
    if name == "fromTime":
        return _s(a)
    if name == "toTime":
        return _s(b)
    if name == "fromTime_ms":
        return _ms(a)
    if name == "toTime_ms":
        return _ms(b)
    if name == "timeInterval":
        _need(name, args, 1)
        return f"toStartOfInterval(toDateTime({args[0]}), INTERVAL {_interval_s(ctx)} second)"
    if name == "timeInterval_ms":
        _need(name, args, 1)
        return (f"toStartOfInterval(toDateTime64({args[0]}, 3), INTERVAL "
                f"{int(max(ctx.interval_ms, 1))} millisecond)")
    if name == "interval_s":
        return str(_interval_s(ctx))
    if name == "interval":
        return format_interval(ctx.interval_ms)
    if name == "interval_ms":
        return str(ctx.interval_ms)
    if name == "timeFrom":
        _need(name, args, 1)
        return f"{args[0]} >= '{_rfc3339(a)}'"
    if name == "timeTo":
        _need(name, args, 1)
        return f"{args[0]} <= '{_rfc3339(b)}'"
    if name == "timeGroup":
        _need(name, args, 2)
        return _time_group(args)
    raise MacroError(f"unknown macro $__{name}")  # pragma: no cover - names come from MACROS


#: every backend macro name (plugin + sqlutil defaults that ClickHouse can use)
MACROS = ("fromTime", "toTime", "fromTime_ms", "toTime_ms", "timeFilter", "timeFilter_ms",
          "dateFilter", "dateTimeFilter", "dt", "timeInterval", "timeInterval_ms", "interval_s",
          "interval", "interval_ms", "timeFrom", "timeTo", "timeGroup")


def expand_backend(sql: str, ctx: QueryContext) -> str:
    """Step 2: the plugin's macros, longest name first, every occurrence (sqlutil Interpolate)."""
    for name in sorted(MACROS, key=len, reverse=True):
        rgx = re.compile(rf"\$__{name}\b")
        while True:
            m = rgx.search(sql)
            if m is None:
                break
            args, end = _args(sql, m.end())
            full = sql[m.start():end]
            sql = sql.replace(full, _macro(name, args, ctx))
    return sql


def expand(sql: str, ctx: QueryContext,
           all_options: Mapping[str, Sequence[str]] | None = None) -> str:
    """What ClickHouse receives for a panel query: browser step, then backend step."""
    return expand_backend(expand_frontend(sql, ctx, all_options), ctx)


def frontend_only_syntax(sql: str) -> list[str]:
    """What in ``sql`` needs the browser step (forbidden in alert rules): names found."""
    found = []
    if "$__conditionalAll" in sql:
        found.append("$__conditionalAll")
    found += [f"${m.group(1) or m.group(3)}" for m in _VAR.finditer(sql)]
    found += [f"$__{m.group(1)}" for m in _BUILTIN.finditer(sql)
              if m.group(1) not in ("interval", "interval_ms")]
    return found


def variables_used(sql: str) -> set[str]:
    """Template variable names a query refers to."""
    return {m.group(1) or m.group(3) for m in _VAR.finditer(sql)}
