"""What the CLI says when the worker answers 401: a token that is set but unknown is not
reported as a token missing."""
from __future__ import annotations

from typing import Any

import pytest
import typer

from cityops.cli.streams_cmds import _refused


class _Answer:
    """The worker's HTTP answer as ``_refused`` reads it (status and JSON body)."""

    status_code = 401

    def json(self) -> dict[str, Any]:
        return {"error": "unauthorized"}


def _message(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(typer.Exit) as caught:
        _refused(_Answer())
    assert caught.value.exit_code == 1
    return " ".join(capsys.readouterr().err.split())


def test_a_token_the_worker_does_not_know_is_named_as_such(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CITYOPS_WORKER_TOKEN", "cty.0000000000.revoked")
    message = _message(capsys)
    assert "does not know the token in CITYOPS_WORKER_TOKEN" in message
    assert "cty.0000000000.revoked" not in message


def test_no_token_asks_for_one(monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CITYOPS_WORKER_TOKEN", raising=False)
    monkeypatch.delenv("CITYOPS_WORKER_TOKEN_FILE", raising=False)
    assert "the worker wants a token: set CITYOPS_WORKER_TOKEN" in _message(capsys)


def test_an_acknowledgement_without_a_name_says_to_give_one(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Without --by or a token of one's own the worker answered "missing 'by'", which names
    no option."""
    from typer.testing import CliRunner

    from cityops.cli.main import app

    monkeypatch.delenv("CITYOPS_WORKER_TOKEN", raising=False)
    monkeypatch.delenv("CITYOPS_WORKER_TOKEN_FILE", raising=False)
    monkeypatch.setenv("CITYOPS_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["alerts", "ack", "crowd_density:jfb_square:1"])
    assert result.exit_code == 2
    assert "say who acknowledges: --by NAME" in " ".join(result.output.split())
