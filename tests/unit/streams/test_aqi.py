"""HJ 633-2012 AQI: hand-computed vectors (formula (1), rounded up; Table 1 notes)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cityops.cli.main import app
from cityops.streams.aqi import BREAKPOINTS, IAQI_LEVELS, _iaqi, _iaqi_exact, compute_aqi, iaqi


@pytest.mark.parametrize(
    ("table", "conc", "expected"),
    [
        ("pm25_24h", 0, 0),
        ("pm25_24h", 0.1, 1),  # 50/35*0.1 = 0.14 → rounded up to 1
        ("pm25_24h", 35, 50),
        ("pm25_24h", 35.1, 51),  # 50 + 50/40*0.1 = 50.125 → 51
        ("pm25_24h", 80, 107),  # 100 + 50/40*5 = 106.25 → 107
        ("pm25_24h", 115, 150),  # exactly on a breakpoint: no float noise
        ("pm25_24h", 600, 500),  # above the top breakpoint: capped
        ("pm10_24h", 120, 85),  # 50 + 50/100*70
        ("no2_1h", 50, 25),
        ("no2_24h", 50, 63),  # 50 + 50/40*10 = 62.5 → 63
        ("co_1h", 12, 104),  # 100 + 50/25*2
        ("co_24h", 3, 75),
        ("co_24h", 14, 150),
        ("o3_8h", 180, 119),  # 100 + 50/55*20 = 118.18 → 119
        ("o3_1h", 850, 325),  # 300 + 100/200*50
        ("so2_24h", 500, 154),  # 150 + 50/325*25 = 153.85 → 154
        ("so2_1h", 800, 200),
    ],
)
def test_iaqi_vectors(table: str, conc: float, expected: int) -> None:
    assert iaqi(table, conc) == expected


def _values_that_test_rounding(table: str) -> list[float]:
    """Every breakpoint and its float neighbours, every one-decimal value whose sub-index is
    a whole number (where float noise alone would round up one too many), and a sweep."""
    import math
    import random

    bps = BREAKPOINTS[table]
    out: list[float] = []
    for b in bps:
        out += [b, math.nextafter(b, -math.inf), math.nextafter(b, math.inf)]
    for i in range(1, len(bps)):
        lo, hi = bps[i - 1], bps[i]
        steps = IAQI_LEVELS[i] - IAQI_LEVELS[i - 1]
        out += [round(lo + (hi - lo) * j / steps, 1) for j in range(steps + 1)]
    rnd = random.Random(table)
    out += [round(rnd.uniform(0, bps[-1] * 1.1), rnd.choice((1, 3, 9))) for _ in range(5000)]
    return [max(v, 0.0) for v in out]


@pytest.mark.parametrize("table", sorted(BREAKPOINTS))
def test_iaqi_float_path_agrees_with_exact_rationals(table: str) -> None:
    values = _values_that_test_rounding(table)
    whole = [v for v in values if _iaqi_exact(table, v) == _exact_value(table, v)]
    assert len(whole) > 50  # the values where rounding up is decided by float noise
    assert [_iaqi.__wrapped__(table, v) for v in values] == [_iaqi_exact(table, v)
                                                             for v in values]


def _exact_value(table: str, v: float) -> float:
    """Formula (1) in exact rationals, not rounded (a whole number where it lands on one)."""
    from fractions import Fraction

    bps = [Fraction(repr(b)) for b in BREAKPOINTS[table]]
    c = Fraction(repr(v))
    for i in range(1, len(bps)):
        if c <= bps[i]:
            return float(Fraction(IAQI_LEVELS[i] - IAQI_LEVELS[i - 1]) / (bps[i] - bps[i - 1])
                         * (c - bps[i - 1]) + IAQI_LEVELS[i - 1])
    return -1.0


def test_hourly_aqi_max_and_primary() -> None:
    r = compute_aqi(pm25=80, pm10=120, no2=50, averaging="1h")
    assert r.iaqi == {"pm25": 107, "pm10": 85, "no2": 25}
    assert r.aqi == 107
    assert r.primary_pollutants == ["pm25"]
    assert (r.category_zh, r.category_en, r.level, r.colour) == (
        "轻度污染", "Lightly polluted", 3, "#FF7E00")


def test_primary_only_above_50() -> None:
    at_50 = compute_aqi(pm25=35, no2=20, averaging="1h")
    assert at_50.aqi == 50
    assert at_50.primary_pollutants == []
    assert (at_50.category_zh, at_50.level) == ("优", 1)
    above = compute_aqi(pm25=35.1, averaging="1h")
    assert above.aqi == 51
    assert above.primary_pollutants == ["pm25"]
    assert (above.category_zh, above.level) == ("良", 2)


def test_tied_primary_pollutants() -> None:
    r = compute_aqi(pm25=75, pm10=150, averaging="24h")
    assert r.aqi == 100
    assert r.primary_pollutants == ["pm25", "pm10"]


def test_daily_uses_24h_tables() -> None:
    r = compute_aqi(no2=50, co=3, so2=500, averaging="24h")
    assert r.iaqi == {"no2": 63, "co": 75, "so2": 154}
    assert r.aqi == 154
    assert r.category_zh == "中度污染"


def test_o3_8h_above_800_falls_back_to_1h() -> None:
    r = compute_aqi(o3_1h=850, o3_8h=900, pm25=50, averaging="24h")
    assert "o3_8h" not in r.iaqi
    assert r.iaqi["o3_1h"] == 325
    assert r.aqi == 325
    assert r.primary_pollutants == ["o3_1h"]
    assert (r.category_zh, r.level, r.colour) == ("严重污染", 6, "#7E0023")
    assert any("800" in n for n in r.notes)


def test_daily_o3_8h_in_range() -> None:
    r = compute_aqi(o3_8h=180, averaging="24h")
    assert r.iaqi == {"o3_8h": 119}
    assert r.primary_pollutants == ["o3_8h"]


def test_so2_1h_above_800_uses_24h_table() -> None:
    with_daily = compute_aqi(so2=900, so2_24h=500, averaging="1h")
    assert with_daily.iaqi == {"so2": 154}
    only_hourly = compute_aqi(so2=900, averaging="1h")
    assert only_hourly.iaqi == {"so2": 213}  # 200 + 100/800*100 = 212.5 → 213
    assert only_hourly.category_zh == "重度污染"
    at_800 = compute_aqi(so2=800, averaging="1h")
    assert at_800.iaqi == {"so2": 200}


def test_hourly_ignores_o3_8h() -> None:
    r = compute_aqi(o3_1h=100, o3_8h=300, averaging="1h")
    assert r.iaqi == {"o3_1h": 32}  # 50/160*100 = 31.25 → 32
    assert r.aqi == 32


def test_nothing_given() -> None:
    r = compute_aqi(averaging="24h")
    assert r.aqi is None
    assert r.level == 0
    assert r.primary_pollutants == []


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        compute_aqi(pm25=-1, averaging="1h")
    with pytest.raises(ValueError):
        compute_aqi(pm25=1, averaging="8h")  # type: ignore[arg-type]


def test_cli_json() -> None:
    result = CliRunner().invoke(app, ["aqi", "pm25=80", "pm10=120", "--averaging", "24h",
                                      "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["aqi"] == 107
    assert data["primary_pollutants"] == ["pm25"]
    assert data["category_zh"] == "轻度污染"


def test_cli_rejects_unknown_pollutant() -> None:
    result = CliRunner().invoke(app, ["aqi", "pm1=3"])
    assert result.exit_code == 2


@pytest.mark.parametrize(("args", "says"), [
    (["pm25=inf"], "'inf' is not a finite number"),
    (["pm25=nan"], "'nan' is not a finite number"),
    (["pm25=80", "pm25=10"], "pm25 given twice"),
    # nothing the hourly index uses: it printed "AQI (1h): None (, level 0, )" and exit 0
    (["o3_8h=900"], "no AQI: none of o3_8h is indexed with --averaging 1h"),
    (["so2_24h=500"], "no AQI: none of so2_24h is indexed with --averaging 1h"),
])
def test_cli_refuses_what_gives_no_index(args: list[str], says: str) -> None:
    result = CliRunner().invoke(app, ["aqi", *args])
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.split())
    assert result.exception is None or isinstance(result.exception, SystemExit)
