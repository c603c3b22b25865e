"""Hourly AQI (HJ 633-2012) as ClickHouse expressions, generated from one breakpoint table.

The ``air_quality_1h`` view publishes the *hourly* ("real-time", 实时报) AQI of each station from
the hourly means in ``agg_air_1h``:

* SO2, NO2, CO, O3 use their **1-hour** breakpoints; SO2 above 800 µg/m³ (where the standard
  stops giving 1-hour breakpoints) falls back to the 24-hour table;
* PM2.5 and PM10 have no 1-hour breakpoints: their **24-hour** table is applied to the hourly
  mean, as hourly publications do;
* IAQI = linear interpolation between breakpoints, rounded **up** (进位取整); above the top
  breakpoint it is 500; AQI = the largest IAQI; the primary pollutant(s) are named only when
  AQI > 50. The streams AQI (``air_quality_index``) is stored separately, with its averaging.

``iaqi_py`` is the same arithmetic in Python, so tests can compare the two.
"""

from __future__ import annotations

import math

IAQI_POINTS: tuple[int, ...] = (0, 50, 100, 150, 200, 300, 400, 500)

#: pollutant column (hourly mean) → concentration breakpoints matching IAQI_POINTS
BREAKPOINTS: dict[str, tuple[float, ...]] = {
    "pm25": (0, 35, 75, 115, 150, 250, 350, 500),  # 24h table, applied to the 1h mean
    "pm10": (0, 50, 150, 250, 350, 420, 500, 600),  # 24h table, applied to the 1h mean
    "so2": (0, 150, 500, 650, 800),  # 1h; above 800 → SO2_24H
    "no2": (0, 100, 200, 700, 1200, 2340, 3090, 3840),  # 1h
    "co": (0, 5, 10, 35, 60, 90, 120, 150),  # 1h, mg/m³
    "o3": (0, 160, 200, 300, 400, 800, 1000, 1200),  # 1h
}
SO2_24H: tuple[float, ...] = (0, 50, 150, 475, 800, 1600, 2100, 2620)

#: AQI upper bounds of the six categories (HJ 633 table 2)
CATEGORIES: tuple[tuple[int, str, str], ...] = (
    (50, "优", "excellent"), (100, "良", "good"), (150, "轻度污染", "lightly polluted"),
    (200, "中度污染", "moderately polluted"), (300, "重度污染", "heavily polluted"),
    (10**9, "严重污染", "severely polluted"),
)
#: output names, as the pollutant is published
POLLUTANT_LABELS = {"pm25": "PM2.5", "pm10": "PM10", "so2": "SO2", "no2": "NO2", "co": "CO",
                    "o3": "O3"}


def _interp_py(c: float, bps: tuple[float, ...]) -> int:
    if c > bps[-1]:
        return 500
    for k in range(1, len(bps)):
        if c <= bps[k]:
            lo, hi = bps[k - 1], bps[k]
            ilo, ihi = IAQI_POINTS[k - 1], IAQI_POINTS[k]
            return math.ceil(round((ihi - ilo) / (hi - lo) * (c - lo) + ilo, 6))
    raise AssertionError("unreachable")


def iaqi_py(pollutant: str, c: float | None) -> int | None:
    """IAQI of an hourly mean concentration, as the SQL computes it."""
    if c is None:
        return None
    c = max(c, 0.0)
    if pollutant == "so2" and c > BREAKPOINTS["so2"][-1]:
        return _interp_py(c, SO2_24H)
    return _interp_py(c, BREAKPOINTS[pollutant])


def _interp_sql(col: str, bps: tuple[float, ...]) -> str:
    branches = []
    for k in range(1, len(bps)):
        lo, hi = bps[k - 1], bps[k]
        ilo, ihi = IAQI_POINTS[k - 1], IAQI_POINTS[k]
        slope = f"({ihi} - {ilo}) / ({hi} - {lo})"
        value = f"round({slope} * ({col} - {lo}) + {ilo}, 6)"
        branches.append(f"{col} <= {hi}, toUInt16(ceil({value}))")
    return f"multiIf({', '.join(branches)}, toUInt16(500))"


def iaqi_sql(pollutant: str, col: str) -> str:
    """SQL IAQI of the Nullable Float64 hourly mean ``col`` (NULL stays NULL)."""
    c = f"greatest({col}, 0)"
    if pollutant == "so2":
        body = (f"if({c} > {BREAKPOINTS['so2'][-1]}, {_interp_sql(c, SO2_24H)}, "
                f"{_interp_sql(c, BREAKPOINTS['so2'])})")
    else:
        body = _interp_sql(c, BREAKPOINTS[pollutant])
    return f"if(isNull({col}), NULL, {body})"


def category_py(aqi: int | None) -> str:
    if aqi is None:
        return ""
    return next(zh for bound, zh, _ in CATEGORIES if aqi <= bound)


def category_sql(aqi_col: str) -> str:
    branches = ", ".join(f"{aqi_col} <= {bound}, '{zh}'" for bound, zh, _ in CATEGORIES[:-1])
    return f"if(isNull({aqi_col}), '', multiIf({branches}, '{CATEGORIES[-1][1]}'))"


def aqi_py(means: dict[str, float | None]) -> tuple[int | None, list[str]]:
    """(AQI, primary pollutants) of hourly means keyed like ``BREAKPOINTS``."""
    iaqi = {p: iaqi_py(p, means.get(p)) for p in BREAKPOINTS}
    values = [v for v in iaqi.values() if v is not None]
    if not values:
        return None, []
    aqi = max(values)
    primary = [POLLUTANT_LABELS[p] for p, v in iaqi.items() if v == aqi] if aqi > 50 else []
    return aqi, primary


def render_context() -> dict[str, str]:
    """Template values the migrations use: ``${iaqi_pm25}`` … ``${aqi}``, ``${primary}``…

    They read the columns ``pm25_ugm3``, ``pm10_ugm3``, ``so2_ugm3``, ``no2_ugm3``, ``o3_ugm3``
    and ``co_mgm3`` of the view's inner SELECT.
    """
    cols = {"pm25": "pm25_ugm3", "pm10": "pm10_ugm3", "so2": "so2_ugm3", "no2": "no2_ugm3",
            "o3": "o3_ugm3", "co": "co_mgm3"}
    ctx = {f"iaqi_{p}": iaqi_sql(p, col) for p, col in cols.items()}
    iaqi_cols = [f"iaqi_{p}" for p in cols]
    ctx["aqi"] = (f"if(({' AND '.join(f'isNull({c})' for c in iaqi_cols)}), NULL, "
                  f"toUInt16(greatest({', '.join(f'ifNull({c}, 0)' for c in iaqi_cols)})))")
    labels = ", ".join(f"if(ifNull({c} = aqi, false), '{POLLUTANT_LABELS[p]}', '')"
                       for p, c in zip(cols, iaqi_cols, strict=True))
    ctx["primary"] = (f"if(ifNull(aqi > 50, false), arrayFilter(x -> x != '', [{labels}]), "
                      f"CAST([] AS Array(String)))")
    ctx["category"] = category_sql("aqi")
    return ctx
