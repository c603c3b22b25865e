"""docker-compose.yml checked statically: no Docker engine runs here, so parse and cross-check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from cityops.cli.main import app
from cityops.core.settings import Settings, secret_fields

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict = COMPOSE["services"]


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return dict(env) if isinstance(env, dict) else dict(e.split("=", 1) for e in env)


def test_images_are_pinned() -> None:
    for name, svc in SERVICES.items():
        if "image" in svc:
            image = svc["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"


def test_every_cityops_variable_is_a_real_setting() -> None:
    known = {f"CITYOPS_{f.upper()}" for f in Settings.model_fields}
    known |= {f"CITYOPS_{f.upper()}_FILE" for f in secret_fields()}
    for name, svc in SERVICES.items():
        if "build" not in svc:  # e.g. the ClickHouse server's own CITYOPS_CH_* passwords
            continue
        for var in _env(svc):
            if var.startswith("CITYOPS_"):
                assert var in known, f"{name}: {var} is not a Settings field"


def test_cityops_services_point_at_compose_hosts() -> None:
    env = _env(SERVICES["worker"])
    assert env["CITYOPS_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert "kafka" in SERVICES
    url = env["CITYOPS_WAREHOUSE_URL"]
    assert url.startswith("clickhouse://cityops_writer@clickhouse:9000/")
    ch = SERVICES["clickhouse"]
    ch_env = _env(ch)
    assert url.rsplit("/", 1)[1] == ch_env["CLICKHOUSE_DB"]
    # least privilege: the shipped users.d file, passwords from the environment only
    assert "CLICKHOUSE_PASSWORD" not in ch_env
    assert any("cityops/deploy/clickhouse/users.d/cityops-users.xml:" in v
               for v in ch["volumes"])
    assert ch_env["CITYOPS_CH_WRITER_PASSWORD"].startswith("${CITYOPS_CH_WRITER_PASSWORD:?")
    for name in ("worker", "migrate"):
        assert _env(SERVICES[name])["CITYOPS_WAREHOUSE_PASSWORD_FILE"] == \
            "/run/secrets/ch_writer_password"
        assert "ch_writer_password" in SERVICES[name]["secrets"]
    Settings(**{k.removeprefix("CITYOPS_").lower(): v for k, v in env.items()
                if k.startswith("CITYOPS_")})


def test_kafka_listener_matches_bootstrap_and_local_port() -> None:
    k = _env(SERVICES["kafka"])
    assert "PLAINTEXT://kafka:9092" in k["KAFKA_ADVERTISED_LISTENERS"]
    host_port = SERVICES["kafka"]["ports"][0].split(":")[0]
    assert int(host_port) == Settings.model_fields["kafka_port"].default
    assert k["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert "zookeeper" not in SERVICES


def _is_group(cmd: object) -> bool:
    return hasattr(cmd, "list_commands")


def _resolve(args: list[str]) -> Any:
    """The (sub)command that ``cityops <args>`` runs; fails if a word names nothing."""
    cmd = typer.main.get_command(app)
    ctx = type(cmd).context_class(cmd)
    for word in args:
        if word.startswith("-") or not _is_group(cmd):
            break
        nxt = cmd.get_command(ctx, word)
        assert nxt is not None, f"no such command: cityops {' '.join(args)}"
        cmd = nxt
    return cmd


def test_resolver_finds_real_commands_and_refuses_unknown_ones() -> None:
    assert _resolve(["kafka", "topics"]).name == "topics"
    with pytest.raises(AssertionError, match="no such command"):
        _resolve(["no-such-command"])


@pytest.mark.parametrize("service", [s for s, v in SERVICES.items() if "build" in v])
def test_service_commands_exist_in_the_cli(service: str) -> None:
    command = SERVICES[service]["command"]
    cmd = _resolve(command)
    assert not _is_group(cmd), f"{service}: {command} names a group"
    opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
    for word in command:
        if word.startswith("--"):
            assert word in opts, f"{service}: {word} is not an option of {command[0]}"


def test_worker_web_port_is_published() -> None:
    env = _env(SERVICES["worker"])
    port = env.get("CITYOPS_WORKER_WEB_PORT")
    assert port is not None
    assert f"{port}:{port}" in SERVICES["worker"]["ports"]
