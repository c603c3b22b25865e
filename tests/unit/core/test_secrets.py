"""Secrets: masked in settings, moved out of URLs, read from ``*_FILE``, never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cityops.cli.main import app
from cityops.core.exceptions import SettingsError
from cityops.core.secrets import redact_url, split_url_password, url_label
from cityops.core.settings import load_settings, secret_fields

PLANTED = "Pl4nted-S3cret-zq"


def test_every_secret_setting_is_a_secretstr() -> None:
    assert set(secret_fields()) >= {"warehouse_password", "grafana_token", "alert_webhook_urls",
                                   "kafka_sasl_password", "worker_token"}


def test_password_in_warehouse_url_is_moved_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYOPS_WAREHOUSE_URL", f"clickhouse://ops:{PLANTED}%40x@ch:9000/db")
    s = load_settings()
    assert s.effective_warehouse_url == "clickhouse://ops@ch:9000/db"
    assert s.warehouse_password.get_secret_value() == f"{PLANTED}@x"
    assert PLANTED not in repr(s) and PLANTED not in str(s.model_dump())


def test_password_given_twice_is_refused_without_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYOPS_WAREHOUSE_URL", f"clickhouse://ops:{PLANTED}@ch:9000/db")
    monkeypatch.setenv("CITYOPS_WAREHOUSE_PASSWORD", PLANTED)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "give it once" in str(err.value) and PLANTED not in str(err.value)


@pytest.mark.parametrize(("var", "value"), [
    ("CITYOPS_WAREHOUSE_URL", f"postgres://u:{PLANTED}@h/db"),
    ("CITYOPS_ALERT_WEBHOOK_URLS", f"https://qyapi.weixin.qq.com/send?key={PLANTED}"),
    ("CITYOPS_KAFKA_SASL_PASSWORD", ""),  # valid: control case for the next one
])
def test_bad_values_are_not_echoed(monkeypatch: pytest.MonkeyPatch, var: str,
                                   value: str) -> None:
    monkeypatch.setenv(var, value)
    if not value:
        load_settings()
        return
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert var in str(err.value)
    assert PLANTED not in str(err.value)


def test_secret_from_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(PLANTED + "\n")
    (tmp_path / "hooks").write_text(f'["https://oapi.dingtalk.com/robot/send?access_token={PLANTED}"]')
    monkeypatch.setenv("CITYOPS_WAREHOUSE_PASSWORD_FILE", str(tmp_path / "pw"))
    monkeypatch.setenv("CITYOPS_ALERT_WEBHOOK_URLS_FILE", str(tmp_path / "hooks"))
    s = load_settings()
    assert s.warehouse_password.get_secret_value() == PLANTED
    assert PLANTED in s.alert_webhook_urls[0].get_secret_value()


def test_secret_file_missing_or_doubled(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CITYOPS_GRAFANA_TOKEN_FILE", str(tmp_path / "absent"))
    with pytest.raises(SettingsError, match="CITYOPS_GRAFANA_TOKEN_FILE: cannot read"):
        load_settings()
    (tmp_path / "tok").write_text(PLANTED)
    monkeypatch.setenv("CITYOPS_GRAFANA_TOKEN_FILE", str(tmp_path / "tok"))
    monkeypatch.setenv("CITYOPS_GRAFANA_TOKEN", "other")
    with pytest.raises(SettingsError, match="not both") as err:
        load_settings()
    assert PLANTED not in str(err.value)


def test_settings_command_masks_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CITYOPS_GRAFANA_TOKEN", "CITYOPS_KAFKA_SASL_PASSWORD", "CITYOPS_WORKER_TOKEN"):
        monkeypatch.setenv(var, PLANTED)
    monkeypatch.setenv("CITYOPS_WAREHOUSE_URL", f"clickhouse://u:{PLANTED}@h:9000/db")
    monkeypatch.setenv("CITYOPS_ALERT_WEBHOOK_URLS", f'["https://x.example/hook?key={PLANTED}"]')
    result = CliRunner().invoke(app, ["settings"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "clickhouse://u@h:9000/db" in result.output
    assert "(set, hidden)" in result.output
    assert PLANTED not in result.output


def test_url_redaction() -> None:
    assert redact_url("clickhouse://u:p@h:9000/db") == "clickhouse://u:**********@h:9000/db"
    assert redact_url("https://h/send?key=abc") == "https://h/send?**********"
    assert url_label("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc") == \
        "https://qyapi.weixin.qq.com"
    assert split_url_password("clickhouse://u:p%3Aq@h/db") == ("clickhouse://u@h/db", "p%3Aq")
    assert split_url_password("chdb:///tmp/w") == ("chdb:///tmp/w", None)
