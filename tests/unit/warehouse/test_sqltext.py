"""Statement splitting, placeholders and parameter rendering: no value is ever pasted into SQL."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from cityops.warehouse.exceptions import MultipleStatements, PermanentWarehouseError, SchemaError
from cityops.warehouse.sqltext import (
    _quoted,
    check_identifier,
    check_params,
    first_keyword,
    param_text,
    placeholders,
    plain_text,
    single_statement,
    split_statements,
    to_driver_query,
)


@pytest.mark.parametrize(("sql", "n"), [
    ("SELECT 1", 1), ("SELECT 1;", 1), ("SELECT 1; SELECT 2", 2), (";;", 0), ("", 0),
    ("SELECT ';'", 1), ("SELECT \"a;b\" FROM `c;d`", 1), ("SELECT 1 -- ; DROP\n", 1),
    ("SELECT 1 /* ; */", 1), ("SELECT 1 /* /* ; */ ; */", 1), ("SELECT 'it''s;'", 1),
    ("SELECT 'a\\';' ; SELECT 2", 2), ("-- only a comment;\n", 0),
    ("SELECT 1; -- trailing comment", 1), ("SELECT 1 /* a ; */ ; DROP TABLE t -- ;", 2),
])
def test_split_statements(sql: str, n: int) -> None:
    assert len(split_statements(sql)) == n


def test_single_statement() -> None:
    assert single_statement("  SELECT 1 ;  ") == "SELECT 1"
    with pytest.raises(MultipleStatements):
        single_statement("SELECT 1; SELECT 2")
    with pytest.raises(PermanentWarehouseError) as err:
        single_statement(" -- nothing\n")
    assert err.value.code == "empty_query"


@pytest.mark.parametrize(("sql", "kw"), [
    ("select 1", "SELECT"), ("  (SELECT 1)", "SELECT"), ("/* x */ WITH a AS (SELECT 1) "
                                                        "SELECT * FROM a", "WITH"),
    ("-- c\ninsert into t values (1)", "INSERT"), ("DROP TABLE x", "DROP"), ("'x'", ""),
])
def test_first_keyword(sql: str, kw: str) -> None:
    assert first_keyword(sql) == kw


def test_placeholders_outside_strings_only() -> None:
    sql = ("SELECT '{a:String}', {b:String} -- {c:String}\n"
           "FROM t WHERE at >= {t:DateTime64(3, 'Asia/Shanghai')} AND x IN {ids:Array(String)}")
    assert [(n, t) for n, t, *_ in placeholders(sql)] == [
        ("b", "String"), ("t", "DateTime64(3, 'Asia/Shanghai')"), ("ids", "Array(String)")]
    check_params(sql, {"b": 1, "t": 2, "ids": 3})
    with pytest.raises(PermanentWarehouseError, match="no value"):
        check_params(sql, {"b": 1})
    with pytest.raises(PermanentWarehouseError, match="not used"):
        check_params(sql, {"b": 1, "t": 2, "ids": 3, "a": 4})


def test_param_text_escapes_for_chdb() -> None:
    assert param_text("a\\b\nc\td'e") == "a\\\\b\\nc\\td'e"
    assert param_text(None) == "\\N"
    assert param_text("\\N") == "\\\\N"  # the text \N, not NULL
    assert param_text(["x", "it's", "a\\b"]) == "['x','it\\'s','a\\\\b']"
    assert param_text([1, 2.5, None]) == "[1,2.5,NULL]"


def test_plain_text_of_types() -> None:
    t = datetime(2026, 1, 1, 8, 0, 0, 123000, tzinfo=timezone(timedelta(hours=8)))
    assert plain_text(t) == "1767225600.123000"
    assert plain_text(datetime(2026, 1, 1, tzinfo=UTC)) == "1767225600"
    assert plain_text(date(2026, 2, 1)) == "2026-02-01"
    assert plain_text(True) == "true" and plain_text(Decimal("1.50")) == "1.50"
    with pytest.raises(PermanentWarehouseError) as naive:
        plain_text(datetime(2026, 1, 1))
    assert naive.value.code == "naive_datetime"
    with pytest.raises(PermanentWarehouseError):
        plain_text(object())


def test_driver_query_casts_placeholders_and_escapes_percent() -> None:
    sql, values = to_driver_query(
        "SELECT * FROM t WHERE note LIKE '%x%' AND a = {a:String} AND b < {b:UInt32} "
        "AND c = '{not:Placeholder}'", {"a": "%(b)s'; DROP", "b": 5})
    assert sql == ("SELECT * FROM t WHERE note LIKE '%%x%%' AND a = CAST(%(a)s AS String) "
                   "AND b < CAST(%(b)s AS UInt32) AND c = '{not:Placeholder}'")
    assert values == {"a": "%(b)s'; DROP", "b": "5"}
    assert (sql % {"a": "'v'", "b": "5"}).count("'v'") == 1
    assert to_driver_query("SELECT '%'", None) == ("SELECT '%'", {})
    with pytest.raises(PermanentWarehouseError):
        to_driver_query("SELECT {a:String) OR 1=1 --}", {"a": "x"})


@pytest.mark.parametrize("name", ["alerts", "footfall_observed", "_x1"])
def test_identifiers_ok(name: str) -> None:
    assert check_identifier(name) == name


@pytest.mark.parametrize("name", ["", "a b", "t; DROP", "`t`", "1abc", "a" * 200, "a.b"])
def test_identifiers_refused(name: str) -> None:
    with pytest.raises(SchemaError):
        check_identifier(name)


def test_an_array_of_plain_strings_is_joined_to_the_literal_element_by_element_gives() -> None:
    """The sink's batches of ids take the joined path; any string that needs escaping, or an
    element that is not a string, takes the element-by-element one: the same text."""
    def one_by_one(values: list) -> str:
        return "[" + ",".join(_quoted(v) for v in values) + "]"

    rnd = random.Random(3)
    alphabet = "abcXYZ019._:-'\\\n\t\r\0\b\f é中"
    for _ in range(2000):
        values: list = ["".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 6)))
                        for _ in range(rnd.randrange(0, 6))]
        if rnd.random() < 0.1:
            values.append(rnd.choice([1, 2.5, None, True]))
        assert _quoted(values) == one_by_one(values), values
        assert param_text(values) == one_by_one(values), values
    ids = [f"fc_jfb_square_0{i % 9}:{i}" for i in range(20_000)]
    assert _quoted(ids) == one_by_one(ids)
    assert _quoted([]) == "[]" and _quoted(["it's"]) == "['it\\'s']"
