"""Times given to the CLI (``board --at``, ``simulate --start/--end``): a time without an offset
is the district's, whatever the host's zone; a bad one is one line and exit status 2. The
board once read ``--at 2026-12-08T01:30:00`` in the host's zone (09:30 in the district on a
UTC host) and answered ``--at tomorrow`` with a traceback."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import typer

from cityops.cli.common import when_or_exit

SH = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def host_in_new_york() -> Iterator[None]:
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def test_a_time_without_an_offset_is_the_district_s(host_in_new_york: None) -> None:
    got = when_or_exit("2026-12-08T01:30:00", SH, "--at")
    assert got == datetime(2026, 12, 8, 1, 30, tzinfo=SH)
    assert when_or_exit("2026-12-08", SH, "--at") == datetime(2026, 12, 8, tzinfo=SH)


def test_offsets_and_z_keep_their_instant() -> None:
    assert when_or_exit("2026-12-07T17:30:00Z", SH, "--at") == datetime(2026, 12, 7, 17, 30,
                                                                          tzinfo=UTC)
    got = when_or_exit("2026-12-08T01:30:00+08:00", SH, "--at")
    assert got is not None and got.astimezone(UTC) == datetime(2026, 12, 7, 17, 30, tzinfo=UTC)
    now = when_or_exit("now", SH, "--at")
    assert now is not None and abs(now - datetime.now(UTC)) < timedelta(seconds=5)
    assert when_or_exit(None, SH, "--at") is None and when_or_exit("", SH, "--at") is None


@pytest.mark.parametrize("text", ["tomorrow", "2026-13-01T00:00:00+08:00", "1765130000",
                                  "2026-12-08 25:00"])
def test_a_bad_time_is_one_line_and_status_2(text: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as done:
        when_or_exit(text, SH, "--at")
    assert done.value.exit_code == 2
    err = capsys.readouterr().err
    assert f"--at {text!r} is not ISO-8601" in " ".join(err.split())
    assert "Traceback" not in err
