"""Mainland-China public holidays and make-up working days (调休), from ``chinese-calendar``.

The State Council publishes each year's arrangement every autumn; the dates move with the
lunar calendar and come with weekend make-up working days, so they are never typed by hand:
``chinese-calendar`` (pinned in constraints.txt) carries the official notices. Upgrading it
is how a new year's arrangement arrives. Dates outside the years it covers get weekends only
(``covered`` says which); the warehouse's ``dim_calendar`` and the simulator read this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache

import chinese_calendar
from chinese_calendar.constants import Holiday

FIRST_YEAR = min(chinese_calendar.holidays).year
LAST_YEAR = max(chinese_calendar.holidays).year
_BY_VALUE = {h.value: h for h in Holiday}
_HOLIDAYS: dict[date, str] = dict(chinese_calendar.holidays)  # official days off → festival
_WORKDAYS: dict[date, str] = dict(chinese_calendar.workdays)  # weekend make-up working days


@dataclass(frozen=True)
class CalendarDay:
    """One date as the district works it."""

    day: date
    is_holiday: bool  # an official day off (法定节假日, with the bridging days)
    is_workday: bool  # a working day, weekend make-up days (调休上班) included
    holiday: str  # key of the day's festival ("spring_festival" …), "" on other days
    name: str  # "Spring Festival 春节" …, "" on other days
    run: str  # key of the holiday break the day belongs to (its first day's festival)
    run_index: int  # 0 = first day off of the break
    covered: bool  # False: outside chinese-calendar's years, weekends only

    @property
    def is_weekend(self) -> bool:
        return self.day.isoweekday() >= 6

    @property
    def is_makeup_workday(self) -> bool:
        return self.is_weekend and self.is_workday


def covered(d: date) -> bool:
    return FIRST_YEAR <= d.year <= LAST_YEAR


def _festival(d: date) -> Holiday | None:
    name = _HOLIDAYS.get(d)  # the package's own table: its API re-validates every call
    return _BY_VALUE.get(name) if name else None


@cache
def calendar_day(d: date) -> CalendarDay:
    """The official status of ``d`` (weekends only outside the covered years)."""
    weekend = d.isoweekday() >= 6
    if not covered(d):
        return CalendarDay(d, False, not weekend, "", "", "", 0, False)
    festival = _festival(d)
    workday = d in _WORKDAYS or (not weekend and festival is None)
    run, index = "", 0
    if festival is not None:
        start = d
        while _festival(start - timedelta(days=1)) is not None:
            start -= timedelta(days=1)
        first = _festival(start)
        run, index = (first or festival).name, (d - start).days
    return CalendarDay(
        d, festival is not None, workday, festival.name if festival else "",
        f"{festival.value} {festival.chinese}" if festival else "", run, index, True)
