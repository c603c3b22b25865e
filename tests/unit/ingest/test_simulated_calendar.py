"""The simulator's calendar follows the official arrangements (chinese-calendar): every
festival's days off, the make-up working days (调休), the Spring Festival eve by lunar date."""

from __future__ import annotations

from datetime import date

from cityops.ingest.simulate import day_info, holiday_of


def test_festivals_missing_before_are_holidays_now() -> None:
    assert holiday_of(date(2026, 4, 5)).name == "qingming"  # Tomb-sweeping Day, Sunday
    assert holiday_of(date(2026, 6, 19)).name == "dragon_boat"
    assert holiday_of(date(2026, 9, 25)).name == "mid_autumn"
    assert [holiday_of(date(2026, 10, d)).name for d in range(1, 8)] == ["national_day"] * 7
    assert holiday_of(date(2026, 10, 8)) is None
    # 2025: Mid-Autumn inside the National Day break: the break is one golden week, 8 days
    assert [holiday_of(date(2025, 10, d)).day_index for d in range(1, 9)] == list(range(8))
    assert holiday_of(date(2025, 10, 6)).golden_week


def test_spring_festival_eve_and_official_break() -> None:
    eve = holiday_of(date(2026, 2, 16))  # Lunar New Year's Day is 17 Feb 2026
    assert (eve.name, eve.day_index, eve.golden_week) == ("spring_festival", 0, True)
    assert holiday_of(date(2026, 2, 15)).name == "spring_festival_break"  # first day off
    assert holiday_of(date(2026, 2, 18)).day_index == 2


def test_make_up_working_days_are_ordinary_working_days() -> None:
    makeup, saturday = day_info(1, date(2026, 2, 14)), day_info(1, date(2026, 3, 7))
    assert makeup.is_workday and makeup.is_weekend and makeup.footfall_factor == 1.0
    assert not saturday.is_workday and saturday.footfall_factor > 1.3
    assert not day_info(1, date(2026, 10, 5)).is_workday  # a Monday inside National Day
    assert day_info(1, date(2026, 9, 20)).is_workday  # Sunday before National Day
    assert day_info(1, date(2026, 6, 19)).footfall_factor >= 1.6  # Dragon Boat day 1
