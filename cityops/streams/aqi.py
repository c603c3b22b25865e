"""China's air quality index per HJ 633-2012 (环境空气质量指数（AQI）技术规定（试行）).

Pure arithmetic, no I/O. Concentrations are µg/m³ except CO in mg/m³, as in HJ 633-2012
Table 1 (表1 空气质量分指数及对应的污染物项目浓度限值).

Which averaging each published AQI uses (also in ``docs/aqi.md``):

* ``averaging="1h"`` — hourly real-time report (实时报, HJ 633-2012 §5.2):
  SO2, NO2, CO and O3 use their **1-hour** breakpoints on the hour's mean. Table 1 defines no
  1-hour breakpoints for PM10 and PM2.5, so the hour's mean of PM10 / PM2.5 is evaluated on
  their **24-hour** breakpoints (the convention of the national real-time publishing
  platform; the standard itself only says the real-time report covers the 1-hour values).
  ``o3_8h`` is not part of the hourly AQI. Table 1 note (3): an SO2 1-hour mean above
  800 µg/m³ gets no 1-hour IAQI; the SO2 IAQI is then reported from the 24-hour table —
  on ``so2_24h`` when given, otherwise on the 1-hour value itself.
* ``averaging="24h"`` — daily report (日报, HJ 633-2012 §5.1): every pollutant on its 24-hour
  breakpoints (Table 1 note (1): the 1-hour SO2/NO2/CO limits are only for the real-time
  report), plus O3 daily maximum 1-hour mean (``o3_1h``, optional) and daily maximum 8-hour
  moving mean (``o3_8h``). Table 1 note (4): an O3 8-hour mean above 800 µg/m³ gets no
  8-hour IAQI; O3 is then reported from the 1-hour value.

Formula (1) of HJ 633-2012: IAQI_P = (IAQI_Hi − IAQI_Lo)/(BP_Hi − BP_Lo) · (C_P − BP_Lo) +
IAQI_Lo, results rounded **up** to integers (进位取整). AQI = max IAQI (formula (2)). The
primary pollutant(s) (首要污染物) are those whose IAQI equals the AQI, named only when
AQI > 50. Concentrations above the top breakpoint get IAQI 500 (capped).
Arithmetic is exact (``fractions.Fraction`` on the decimal text of each value), so a value
exactly on a breakpoint never rounds up by floating-point noise.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

Averaging = Literal["1h", "24h"]

IAQI_LEVELS: tuple[int, ...] = (0, 50, 100, 150, 200, 300, 400, 500)

#: HJ 633-2012 Table 1 breakpoints, paired with IAQI_LEVELS (µg/m³; CO mg/m³).
BREAKPOINTS: dict[str, tuple[float, ...]] = {
    "so2_24h": (0, 50, 150, 475, 800, 1600, 2100, 2620),
    "so2_1h": (0, 150, 500, 650, 800),
    "no2_24h": (0, 40, 80, 180, 280, 565, 750, 940),
    "no2_1h": (0, 100, 200, 700, 1200, 2340, 3090, 3840),
    "pm10_24h": (0, 50, 150, 250, 350, 420, 500, 600),
    "co_24h": (0, 2, 4, 14, 24, 36, 48, 60),
    "co_1h": (0, 5, 10, 35, 60, 90, 120, 150),
    "o3_1h": (0, 160, 200, 300, 400, 800, 1000, 1200),
    "o3_8h": (0, 100, 160, 215, 265, 800),
    "pm25_24h": (0, 35, 75, 115, 150, 250, 350, 500),
}

#: Upper ends of the tables that HJ 633-2012 does not extend (Table 1 notes (3), (4)).
SO2_1H_MAX_UGM3 = 800.0
O3_8H_MAX_UGM3 = 800.0

#: (upper AQI, level, 中文, English, colour hex) per HJ 633-2012 Table 2 and Appendix A.
CATEGORIES: tuple[tuple[int, int, str, str, str], ...] = (
    (50, 1, "优", "Excellent", "#00E400"),
    (100, 2, "良", "Good", "#FFFF00"),
    (150, 3, "轻度污染", "Lightly polluted", "#FF7E00"),
    (200, 4, "中度污染", "Moderately polluted", "#FF0000"),
    (300, 5, "重度污染", "Heavily polluted", "#99004C"),
    (10**9, 6, "严重污染", "Severely polluted", "#7E0023"),
)

#: Display names of the IAQI keys (the keys of ``AqiResult.iaqi``).
POLLUTANT_LABELS: dict[str, str] = {
    "pm25": "PM2.5", "pm10": "PM10", "o3_1h": "O3-1h", "o3_8h": "O3-8h", "no2": "NO2",
    "so2": "SO2", "co": "CO",
}


@dataclass(frozen=True)
class AqiResult:
    """AQI, sub-indices and category of one set of concentrations."""

    aqi: int | None
    iaqi: dict[str, int] = field(default_factory=dict)
    primary_pollutants: list[str] = field(default_factory=list)
    category_zh: str = ""
    category_en: str = ""
    level: int = 0  # 1–6; 0 only when no pollutant was given (aqi is None)
    colour: str = ""
    averaging: Averaging = "1h"
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """JSON-able form (CLI ``--json``, logs)."""
        return {
            "aqi": self.aqi, "iaqi": dict(self.iaqi),
            "primary_pollutants": list(self.primary_pollutants),
            "category_zh": self.category_zh, "category_en": self.category_en,
            "level": self.level, "colour": self.colour, "averaging": self.averaging,
            "notes": list(self.notes),
        }


def _exact(value: float) -> Fraction:
    """Exact rational of the value's shortest decimal text, so 75.0 stays 75 exactly."""
    return Fraction(repr(float(value)))


#: the breakpoints as exact rationals, computed once
_EXACT_BREAKPOINTS: dict[str, tuple[Fraction, ...]] = {
    table: tuple(_exact(b) for b in bps) for table, bps in BREAKPOINTS.items()}


def iaqi(table: str, concentration: float) -> int:
    """Sub-index of one concentration on one Table 1 column (formula (1), rounded up)."""
    if concentration is None or math.isnan(concentration) or concentration < 0:
        raise ValueError(f"{table}: concentration must be a number ≥ 0, got {concentration!r}")
    if table not in BREAKPOINTS:
        raise KeyError(table)
    return _iaqi(table, float(concentration))


@functools.lru_cache(maxsize=1 << 16)
def _iaqi(table: str, concentration: float) -> int:
    """``iaqi`` of a checked value; cached: a station's hourly means repeat across the
    re-publications of their hour and of the 24 trailing daily indexes."""
    fbps = BREAKPOINTS[table]
    if fbps[0] <= concentration < fbps[-1]:
        # float first: formula (1) rounded up is exact unless the value lies within float
        # error of a whole number, and only then is it worked out in exact rationals below
        for i in range(1, len(fbps)):
            if concentration < fbps[i]:
                lo, hi = fbps[i - 1], fbps[i]
                i_lo, i_hi = IAQI_LEVELS[i - 1], IAQI_LEVELS[i]
                value = (i_hi - i_lo) / (hi - lo) * (concentration - lo) + i_lo
                if abs(value - round(value)) > 1e-6:
                    return math.ceil(value)
                break
    return _iaqi_exact(table, concentration)


def _iaqi_exact(table: str, concentration: float) -> int:
    """``_iaqi`` in exact rationals: the sub-index of a value on or next to a whole number."""
    bps = _EXACT_BREAKPOINTS[table]
    c = _exact(concentration)
    if c >= bps[-1]:
        return 500 if c > bps[-1] else IAQI_LEVELS[len(bps) - 1]
    for i in range(1, len(bps)):
        lo, hi = bps[i - 1], bps[i]
        if c <= hi:
            i_lo, i_hi = IAQI_LEVELS[i - 1], IAQI_LEVELS[i]
            value = Fraction(i_hi - i_lo) / (hi - lo) * (c - lo) + i_lo
            return math.ceil(value)
    raise AssertionError("unreachable")  # pragma: no cover


def category(aqi: int) -> tuple[int, str, str, str]:
    """(level, 中文, English, colour) of an AQI value (HJ 633-2012 Table 2)."""
    for upper, level, zh, en, colour in CATEGORIES:
        if aqi <= upper:
            return level, zh, en, colour
    raise AssertionError("unreachable")  # pragma: no cover


def compute_aqi(
    pm25: float | None = None,
    pm10: float | None = None,
    o3_1h: float | None = None,
    o3_8h: float | None = None,
    no2: float | None = None,
    so2: float | None = None,
    co: float | None = None,
    *,
    averaging: Averaging,
    so2_24h: float | None = None,
) -> AqiResult:
    """AQI per HJ 633-2012 for the hourly (``"1h"``) or daily (``"24h"``) report.

    See the module docstring for which table each argument is evaluated on. ``so2_24h`` is
    only used in hourly mode, when the SO2 1-hour mean exceeds 800 µg/m³ (Table 1 note (3)).
    """
    if averaging not in ("1h", "24h"):
        raise ValueError(f"averaging must be '1h' or '24h', got {averaging!r}")
    sub: dict[str, int] = {}
    notes: list[str] = []
    hourly = averaging == "1h"
    if pm25 is not None:
        sub["pm25"] = iaqi("pm25_24h", pm25)
    if pm10 is not None:
        sub["pm10"] = iaqi("pm10_24h", pm10)
    if no2 is not None:
        sub["no2"] = iaqi("no2_1h" if hourly else "no2_24h", no2)
    if co is not None:
        sub["co"] = iaqi("co_1h" if hourly else "co_24h", co)
    if so2 is not None:
        if hourly and so2 > SO2_1H_MAX_UGM3:
            basis = so2_24h if so2_24h is not None else so2
            sub["so2"] = iaqi("so2_24h", basis)
            notes.append("so2 1h > 800 µg/m³: IAQI from the 24h table (HJ 633-2012 Table 1)")
        else:
            sub["so2"] = iaqi("so2_1h" if hourly else "so2_24h", so2)
    if o3_1h is not None:
        sub["o3_1h"] = iaqi("o3_1h", o3_1h)
    if o3_8h is not None and not hourly:
        if o3_8h > O3_8H_MAX_UGM3:
            notes.append("o3 8h > 800 µg/m³: O3 reported by its 1h IAQI (HJ 633-2012 Table 1)")
            if o3_1h is None:
                notes.append("o3 8h > 800 µg/m³ and no o3_1h given: O3 not indexed")
        else:
            sub["o3_8h"] = iaqi("o3_8h", o3_8h)
    elif o3_8h is not None:
        notes.append("o3_8h is not part of the hourly AQI (reported alongside only)")
    if not sub:
        return AqiResult(aqi=None, averaging=averaging, notes=tuple(notes))
    aqi = max(sub.values())
    primary = [k for k, v in sub.items() if v == aqi] if aqi > 50 else []
    level, zh, en, colour = category(aqi)
    return AqiResult(aqi=aqi, iaqi=sub, primary_pollutants=primary, category_zh=zh,
                     category_en=en, level=level, colour=colour, averaging=averaging,
                     notes=tuple(notes))
