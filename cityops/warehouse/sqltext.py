"""SQL text handling without a database: statement splitting, placeholders, parameter values.

Queries carry parameters as ClickHouse placeholders ``{name:Type}``; user values are never
pasted into SQL text:

* embedded (chdb) sends them as server-side query parameters, each rendered to ClickHouse's
  *Escaped* text form by ``param_text`` (the engine parses it as the declared type);
* server (clickhouse-driver) rewrites each placeholder to ``CAST(%(name)s AS Type)`` and lets
  the driver quote the same text (ClickHouse 18.16 has no server-side parameters on the native
  protocol), so both backends give a parameter the same meaning.

Aware datetimes travel as Unix epoch seconds, so the zone a query declares on a
``DateTime64(3, '<district zone>')`` placeholder cannot shift them; naive datetimes are refused.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from cityops.warehouse.exceptions import MultipleStatements, PermanentWarehouseError

IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):((?:[^{}'\"]|'[^'\\]*')+)\}")


@dataclass(frozen=True)
class Token:
    kind: str  # "code" | "string" | "ident" | "comment" | "semicolon"
    text: str
    start: int


def tokenize(sql: str) -> Iterator[Token]:
    """Split SQL into code, quoted strings / identifiers, comments and semicolons.

    Follows ClickHouse's lexer where it matters for safety: ``'…'`` strings with backslash
    escapes and doubled quotes, ``"…"`` / `` `…` `` identifiers, ``--`` line comments
    and nested ``/* … */`` comments. An unterminated quote or comment runs to the end.
    """
    i, n = 0, len(sql)
    code_start = 0

    def flush(upto: int) -> Iterator[Token]:
        if upto > code_start:
            yield Token("code", sql[code_start:upto], code_start)

    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            yield from flush(i)
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            end = min(j + 1, n)
            yield Token("string" if ch == "'" else "ident", sql[i:end], i)
            i = code_start = end
        elif sql.startswith("--", i):
            yield from flush(i)
            j = sql.find("\n", i)
            end = n if j < 0 else j + 1
            yield Token("comment", sql[i:end], i)
            i = code_start = end
        elif sql.startswith("/*", i):
            yield from flush(i)
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            yield Token("comment", sql[i:j], i)
            i = code_start = j
        elif ch == ";":
            yield from flush(i)
            yield Token("semicolon", ";", i)
            i = code_start = i + 1
        else:
            i += 1
    yield from flush(n)


def split_statements(sql: str) -> list[str]:
    """Statements of a script, split at top-level ``;``; empty / comment-only ones dropped."""
    out: list[str] = []
    current: list[str] = []
    meaningful = False
    for tok in tokenize(sql):
        if tok.kind == "semicolon":
            if meaningful:
                out.append("".join(current).strip())
            current, meaningful = [], False
            continue
        current.append(tok.text)
        if tok.kind != "comment" and tok.text.strip():
            meaningful = True
    if meaningful:
        out.append("".join(current).strip())
    return out


def single_statement(sql: str) -> str:
    """The one statement in ``sql`` (a trailing ``;`` is allowed); else ``MultipleStatements``."""
    statements = split_statements(sql)
    if not statements:
        raise PermanentWarehouseError("empty query", code="empty_query")
    if len(statements) > 1:
        raise MultipleStatements(
            f"{len(statements)} statements given; run one statement at a time")
    return statements[0]


def first_keyword(sql: str) -> str:
    """The first word of the statement, upper-cased (comments and brackets skipped)."""
    for tok in tokenize(sql):
        if tok.kind == "code":
            m = re.search(r"[A-Za-z_]+", tok.text)
            stripped = tok.text.strip().lstrip("(").strip()
            if m and stripped:
                return m.group(0).upper()
        elif tok.kind in ("string", "ident"):
            return ""
    return ""


READ_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"})

#: table functions a read-only statement may use: they make rows from their arguments alone.
#: Every other one reads or writes outside the warehouse (``file``, ``url``, ``s3``,
#: ``remote``, ``executable``, ``mysql`` …) and the embedded engine confines none of them.
SAFE_TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "values",
                                  "generateRandom", "generate_series", "generateSeries"})
#: ordinary functions that read the host: ``file(path)`` returns any file's bytes (the
#: process's ``/proc/self/environ`` holds its secrets), the model evaluators load files
HOST_READING_FUNCTIONS = frozenset({"file", "catboostEvaluate", "modelEvaluate"})

_SAFE_TABLE = frozenset(n.lower() for n in SAFE_TABLE_FUNCTIONS)
_HOST_READING = frozenset(n.lower() for n in HOST_READING_FUNCTIONS)
_AST_FUNCTION_RE = re.compile(r"^( *)Function (\S+)")


def functions_refused(ast: str) -> list[str]:
    """The functions of a read-only statement that reach outside the warehouse, from the
    engine's own parse of it (``EXPLAIN AST``): a table function not in
    ``SAFE_TABLE_FUNCTIONS`` (the child of a ``TableExpression``), or a function of
    ``HOST_READING_FUNCTIONS`` anywhere (select list, WHERE, a subquery, a CTE …), as
    ``name()``. Names in the AST are the engine's, so no spelling or comment hides one."""
    refused: list[str] = []
    lines = ast.splitlines()
    for i, line in enumerate(lines):
        m = _AST_FUNCTION_RE.match(line)
        if m is None:
            continue
        name = m.group(2)
        above = lines[i - 1] if i else ""
        is_table = (above.strip().startswith("TableExpression")
                    and len(above) - len(above.lstrip(" ")) == len(m.group(1)) - 1)
        folded = name.lower()  # some names are case-insensitive to the engine
        if (is_table and folded not in _SAFE_TABLE) or folded in _HOST_READING:
            refused.append(f"{name}()")
    return refused


def placeholders(sql: str) -> list[tuple[str, str, int, int]]:
    """``(name, type, start, end)`` of every ``{name:Type}`` outside strings and comments."""
    code = [(t.start, t.start + len(t.text)) for t in tokenize(sql) if t.kind == "code"]
    found: list[tuple[str, str, int, int]] = []
    for m in _PLACEHOLDER_RE.finditer(sql):
        if any(lo <= m.start() < hi for lo, hi in code):
            found.append((m.group(1), m.group(2).strip(), m.start(), m.end()))
    return found


def check_params(sql: str, params: Mapping[str, Any] | None) -> None:
    """Every placeholder has a value and every value a placeholder."""
    used = {name for name, *_ in placeholders(sql)}
    given = set(params or {})
    missing, extra = used - given, given - used
    if missing:
        raise PermanentWarehouseError(f"no value for query parameter(s) {sorted(missing)}",
                                      code="missing_parameter")
    if extra:
        raise PermanentWarehouseError(f"parameter(s) {sorted(extra)} not used in the query",
                                      code="unused_parameter")


def _epoch_text(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise PermanentWarehouseError(
            f"naive datetime {value.isoformat()} as a query parameter; give it a time zone",
            code="naive_datetime")
    ts = value.timestamp()
    whole = math.floor(ts)
    micros = round((ts - whole) * 1_000_000)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    return f"{whole}.{micros:06d}" if micros else str(whole)


def _array_text(values: list[Any] | tuple[Any, ...]) -> str:
    """An array literal. A list of strings none of which needs escaping (the sink's batches
    of event ids, 20,000 of them) is joined at once: element by element it took 40 ms of
    the sink's CPU per batch; the same text either way."""
    if values and all(type(v) is str for v in values) and (
            _UNSAFE_RE.search("".join(values)) is None):
        return "['" + "','".join(values) + "']"
    return "[" + ",".join(_quoted(v) for v in values) + "]"


def _quoted(value: Any) -> str:
    """A ClickHouse literal inside a composite value (array elements)."""
    if value is None:
        return "NULL"
    if isinstance(value, (list, tuple)):
        return _array_text(value)
    text = plain_text(value)
    if isinstance(value, (bool, int, float, Decimal)):
        return text
    return "'" + _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], text).replace("'", "\\'") + "'"


def plain_text(value: Any) -> str:
    """The textual form ClickHouse parses for ``value`` (before any escaping)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return repr(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return _epoch_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return _array_text(value)
    raise PermanentWarehouseError(
        f"unsupported query parameter type {type(value).__name__}", code="bad_parameter")


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0", "\b": "\\b",
            "\f": "\\f"}
_ESCAPE_RE = re.compile("[\\\\\n\t\r\0\b\f]")
#: what a string literal inside a composite value must escape (``_quoted``): the escapes
#: above and the quote
_UNSAFE_RE = re.compile("[" + re.escape("".join(_ESCAPES)) + "']")


def param_text(value: Any) -> str:
    """``value`` as a chdb / HTTP query-parameter string (ClickHouse *Escaped* format)."""
    if value is None:
        return "\\N"
    if isinstance(value, (list, tuple)):  # composite values are parsed as literals, unescaped
        return plain_text(value)
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], plain_text(value))


def to_driver_query(sql: str, params: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """Rewrite ``{name:Type}`` placeholders for clickhouse-driver's client-side substitution.

    Each becomes ``CAST(%(name)s AS Type)`` with the value's plain text (the driver quotes and
    escapes it); every other ``%`` is doubled so the driver's ``%`` formatting leaves it alone.
    """
    check_params(sql, params)
    if not params:
        return sql, {}
    out: list[str] = []
    pos = 0
    for name, typ, start, end in placeholders(sql):
        out.append(sql[pos:start].replace("%", "%%"))
        if not _safe_type(typ):
            raise PermanentWarehouseError(f"bad parameter type {typ!r}", code="bad_parameter")
        out.append(f"CAST(%({name})s AS {typ})")
        pos = end
    out.append(sql[pos:].replace("%", "%%"))
    values = {k: (None if v is None else plain_text(v)) for k, v in params.items()}
    return "".join(out), values


_TYPE_RE = re.compile(r"^[A-Za-z0-9_(), '/+-]+$")


def _safe_type(typ: str) -> bool:
    return bool(_TYPE_RE.match(typ)) and typ.count("'") % 2 == 0


def check_identifier(name: str, what: str = "identifier") -> str:
    """A bare ClickHouse identifier, or ``SchemaError``; used where names come from callers."""
    from cityops.warehouse.exceptions import SchemaError

    if not IDENT_RE.match(name):
        raise SchemaError(f"invalid {what} {name!r}", code="bad_identifier")
    return name
