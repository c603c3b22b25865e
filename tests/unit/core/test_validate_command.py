"""``cityops validate``: per-line reasons, a summary per reason, exit status 0 only when clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
from typer.testing import CliRunner

from cityops.cli.main import app

runner = CliRunner()

GOOD = {"event_id": "e1", "source": "cp_wfc", "carpark_id": "cp_wfc",
        "event_time": "2026-11-20T19:30:00+08:00", "capacity": 650, "occupied": 100}


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_all_valid_file_exits_zero(tmp_path: Path) -> None:
    f = _write(tmp_path / "ok.jsonl", [orjson.dumps({**GOOD, "event_id": f"e{i}"})
                                        for i in range(5)])
    result = runner.invoke(app, ["validate", "--feed", "parking", str(f)])
    assert result.exit_code == 0, result.output
    assert "5 lines, 5 valid, 0 invalid" in result.output


def test_invalid_lines_are_listed_with_line_numbers_and_summarised(tmp_path: Path) -> None:
    f = _write(tmp_path / "mixed.jsonl", [
        orjson.dumps(GOOD),
        b"{not json",
        orjson.dumps({**GOOD, "occupied": 9999}),
        b"",
        orjson.dumps({**GOOD, "carpark_id": "cp_nowhere"}),
        orjson.dumps({**GOOD, "occupied": 10_000}),
    ])
    result = runner.invoke(app, ["validate", "--feed", "parking", str(f)])
    assert result.exit_code == 1
    out = result.output
    assert f"{f}:2: bad_json" in out
    assert f"{f}:3: over_capacity" in out
    assert f"{f}:5: unknown_carpark" in out
    assert "5 lines, 1 valid, 4 invalid" in out
    assert "over_capacity: 2" in out and "bad_json: 1" in out


def test_missing_and_binary_files_get_one_line_errors(tmp_path: Path) -> None:
    binary = tmp_path / "photo.jpg"
    binary.write_bytes(b"\xff\xd8\xff\x00\x00JFIF\x00")
    for target, needle in ((tmp_path / "absent.jsonl", "no such file"),
                           (binary, "not a text file")):
        proc = subprocess.run(
            [sys.executable, "-m", "cityops.cli", "validate", "--feed", "air", str(target)],
            capture_output=True, text=True, check=False,
        )
        assert proc.returncode == 2
        assert needle in proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        assert len(proc.stderr.strip().splitlines()) == 1


def test_unknown_feed_is_refused(tmp_path: Path) -> None:
    f = _write(tmp_path / "x.jsonl", [orjson.dumps(GOOD)])
    result = runner.invoke(app, ["validate", "--feed", "weather", str(f)])
    assert result.exit_code == 2
    assert "unknown feed 'weather'" in result.output
