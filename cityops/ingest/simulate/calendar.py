"""The district calendar as the simulators see it: weekdays, golden weeks, holidays, weather.

Everything here is a pure function of (seed, date): the same seed gives the same weather and
the same day factors whatever range is simulated, so overlapping runs agree.

A *simulation day* ``D`` runs from 04:00 local on ``D`` to 04:00 on ``D + 1``. So a night of
the night economy (18:00 → 02:00) belongs to the evening's date, as the night-economy studies
count it, and the quiet hours around 04:00 are where one simulated day hands over to the next.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from functools import lru_cache

from cityops.core.holidays import calendar_day

#: Hour (local) at which a simulation day starts; the night economy ends at 02:00 before it.
DAY_START_HOUR = 4

#: Lunar New Year's Day (春节, first day of the first lunar month), Gregorian dates: astronomy,
#: not the official arrangement (that comes from chinese-calendar via cityops.core.holidays);
#: used for the eve's reunion dinner and the first days' crowds.
SPRING_FESTIVAL: dict[int, date] = {
    2018: date(2018, 2, 16), 2019: date(2019, 2, 5), 2020: date(2020, 1, 25),
    2021: date(2021, 2, 12), 2022: date(2022, 2, 1), 2023: date(2023, 1, 22),
    2024: date(2024, 2, 10), 2025: date(2025, 1, 29), 2026: date(2026, 2, 17),
    2027: date(2027, 2, 6), 2028: date(2028, 1, 26), 2029: date(2029, 2, 13),
    2030: date(2030, 2, 3), 2031: date(2031, 1, 23), 2032: date(2032, 2, 11),
    2033: date(2033, 1, 31), 2034: date(2034, 2, 19), 2035: date(2035, 2, 8),
}

# Daily footfall multipliers of the golden weeks and other holidays, by day of the holiday.
# National Day (国庆) 1–7 Oct sets the records at Jiefangbei and Hongyadong; the Spring
# Festival's eve is quiet in the evening (family reunion dinner), the following days are busy.
_NATIONAL_DAY = (2.9, 3.1, 2.9, 2.6, 2.3, 2.0, 1.7)
_SPRING_FESTIVAL = (0.75, 1.7, 2.3, 2.5, 2.4, 2.1, 1.9, 1.6)  # eve, day 1 … day 7
_LABOUR_DAY = (2.0, 2.1, 1.9, 1.7, 1.5)
_QINGMING = (1.35, 1.3, 1.15)  # tomb sweeping in the morning, out in town after
_DRAGON_BOAT = (1.6, 1.5, 1.25)
_MID_AUTUMN = (1.5, 1.7, 1.4)  # reunion dinner, then the riverside lanterns
_BREAK = (1.3,)  # days of a break outside the festival's own table (e.g. before the eve)
#: official holiday keys (chinese-calendar) → the simulator's names
_NAMES = {"new_years_day": "new_year", "spring_festival": "spring_festival",
          "tomb_sweeping_day": "qingming", "labour_day": "labour_day",
          "dragon_boat_festival": "dragon_boat", "national_day": "national_day",
          "mid_autumn_festival": "mid_autumn", "anti_fascist_70th_day": "victory_day"}
_FACTORS = {"national_day": _NATIONAL_DAY, "spring_festival": _SPRING_FESTIVAL,
            "labour_day": _LABOUR_DAY, "qingming": _QINGMING, "dragon_boat": _DRAGON_BOAT,
            "mid_autumn": _MID_AUTUMN, "new_year_eve": (2.0,), "new_year": (1.6,),
            "victory_day": (1.4,), "spring_festival_break": _BREAK}
_WEEKEND = {4: 1.12, 5: 1.45, 6: 1.30}  # Friday (its night), Saturday, Sunday

# Chongqing climate by month (1..12): mean daily temperature °C, rain probability.
_TEMP = (8.0, 10.0, 14.0, 19.0, 23.0, 26.0, 29.5, 29.5, 25.0, 19.0, 14.0, 9.5)
_RAIN_P = (0.33, 0.35, 0.40, 0.45, 0.50, 0.50, 0.38, 0.30, 0.42, 0.52, 0.45, 0.35)


def rng_for(seed: int, *parts: object) -> random.Random:
    """A private, reproducible RNG for one (seed, label…) — independent of PYTHONHASHSEED."""
    return random.Random("|".join([str(seed), *map(str, parts)]))


def stable_unit(seed: int, *parts: object) -> float:
    """A reproducible number in [0, 1) for a label (no RNG state)."""
    return rng_for(seed, "unit", *parts).random()


@dataclass(frozen=True)
class Holiday:
    name: str  # "national_day", "spring_festival", "qingming", "dragon_boat", "mid_autumn" …
    day_index: int  # 0 = first day of the holiday (the eve for the Spring Festival)
    golden_week: bool


def holiday_of(d: date) -> Holiday | None:
    """The public holiday ``d`` falls in (official days off from chinese-calendar), the
    Spring Festival's eve and first week by the lunar date, or New Year's Eve."""
    lny = SPRING_FESTIVAL.get(d.year)
    if lny is not None and 0 <= (d - lny).days + 1 < len(_SPRING_FESTIVAL):
        return Holiday("spring_festival", (d - lny).days + 1, True)
    day = calendar_day(d)
    if day.run:
        name = _NAMES.get(day.run, day.run)
        if name == "spring_festival":  # official days off before the eve / after day 7
            return Holiday("spring_festival_break", 0, True)
        return Holiday(name, day.run_index, name == "national_day")
    if (d.month, d.day) == (12, 31):
        return Holiday("new_year_eve", 0, False)
    return None


@dataclass(frozen=True)
class Weather:
    """One day's weather: drives footfall (rain keeps people home), air quality and heat."""

    kind: str  # "clear", "cloudy", "light_rain", "heavy_rain"
    t_mean_c: float
    t_amp_c: float  # half the day's temperature range
    humidity_pct: float
    ventilation: float  # 1 = normal mixing; < 1 stagnant air (pollution builds up)

    @property
    def rainy(self) -> bool:
        return self.kind.endswith("rain")

    @property
    def t_max_c(self) -> float:
        return self.t_mean_c + self.t_amp_c

    def temperature(self, hour: float) -> float:
        """Temperature at local ``hour`` (minimum near 06:00, maximum near 15:00)."""
        return self.t_mean_c + self.t_amp_c * math.cos(2 * math.pi * (hour - 15) / 24)

    def humidity(self, hour: float) -> float:
        h = self.humidity_pct - 0.6 * (self.temperature(hour) - self.t_mean_c) * 3
        return max(20.0, min(100.0, h))


@lru_cache(maxsize=4096)
def weather_of(seed: int, d: date) -> Weather:
    """Deterministic weather of day ``d`` for ``seed`` (Chongqing climate by month)."""
    r = rng_for(seed, "weather", d.isoformat())
    m = d.month - 1
    rain = r.random() < _RAIN_P[m]
    heavy = rain and r.random() < (0.40 if 5 <= d.month <= 8 else 0.22)
    kind = ("heavy_rain" if heavy else "light_rain") if rain else (
        "clear" if r.random() < 0.45 else "cloudy")
    t_mean = _TEMP[m] + r.gauss(0, 2.0)
    amp = {"clear": 5.0, "cloudy": 3.5, "light_rain": 2.5, "heavy_rain": 2.0}[kind]
    humidity = {"clear": 68.0, "cloudy": 76.0, "light_rain": 86.0, "heavy_rain": 92.0}[kind]
    ventilation = max(0.35, r.gauss(1.0, 0.2) * (1.25 if rain else 1.0))
    return Weather(kind, round(t_mean, 2), amp, humidity + r.gauss(0, 3), ventilation)


@dataclass(frozen=True)
class DayInfo:
    """Everything the simulators need to know about one simulation day."""

    day: date
    weekday: int  # Monday = 0
    holiday: Holiday | None
    footfall_factor: float  # daily volume multiplier vs an ordinary weekday
    busyness: float  # a small random day-to-day wobble shared by every feed
    weather: Weather

    @property
    def is_weekend(self) -> bool:
        return self.weekday >= 5

    @property
    def is_workday(self) -> bool:
        """An official working day: weekend make-up days (调休) count, days off do not."""
        return calendar_day(self.day).is_workday


@lru_cache(maxsize=4096)
def day_info(seed: int, d: date) -> DayInfo:
    hol = holiday_of(d)
    official = calendar_day(d)
    # a weekend make-up working day (调休上班) is an ordinary working day for footfall
    factor = 1.0 if official.is_makeup_workday else _WEEKEND.get(d.weekday(), 1.0)
    if hol is not None:
        table = _FACTORS.get(hol.name, _BREAK)
        factor = max(factor, table[min(hol.day_index, len(table) - 1)])
    busyness = math.exp(rng_for(seed, "busyness", d.isoformat()).gauss(0.0, 0.06))
    return DayInfo(d, d.weekday(), hol, factor, busyness, weather_of(seed, d))


def sim_day_of(moment: datetime, tz: tzinfo) -> date:
    """The simulation day (and night-economy "night") a moment belongs to."""
    local = moment.astimezone(tz)
    return (local - timedelta(hours=DAY_START_HOUR)).date()


def sim_day_bounds(d: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """[start, end) of simulation day ``d``: 04:00 local on ``d`` to 04:00 on ``d + 1``."""
    start = datetime.combine(d, time(DAY_START_HOUR), tzinfo=tz)
    end = datetime.combine(d + timedelta(days=1), time(DAY_START_HOUR), tzinfo=tz)
    return start, end
