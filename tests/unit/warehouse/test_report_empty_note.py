"""An empty night-economy report says why, and which nights to ask for."""
from datetime import date
from pathlib import Path

from cityops.warehouse.report import ReportResult


def test_a_report_with_nights_has_no_note() -> None:
    assert ReportResult(index=Path("r/index.html"), nights=3).empty_note is None


def test_an_empty_warehouse_is_named_as_such() -> None:
    note = ReportResult(index=Path("r/index.html"), nights=0).empty_note
    assert note == "no night in this range has footfall: the warehouse holds none yet"


def test_an_empty_range_names_the_nights_held() -> None:
    result = ReportResult(index=Path("r/index.html"), nights=0,
                          held=(date(2026, 1, 31), date(2026, 2, 15)))
    assert result.empty_note == ("no night in this range has footfall: the warehouse holds "
                                 "nights 2026-01-31 to 2026-02-15")
