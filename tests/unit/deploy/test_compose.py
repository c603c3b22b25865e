"""docker-compose.yml checked statically: no Docker engine runs here, so parse and cross-check
it against the code both ways: settings, topics, ports, users, mounts, secrets, commands."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import typer
import yaml

from cityops.cli.main import app
from cityops.core.settings import Settings
from cityops.deploy import layout

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict = COMPOSE["services"]
CITYOPS_SERVICES = [s for s, v in SERVICES.items() if "build" in v]
LONG_RUNNING = [s for s, v in SERVICES.items() if v.get("restart") != "no"]
#: long-running services without an endpoint to probe (restart policy and limits only)
NO_ENDPOINT = {"simulator"}
ENV_EXAMPLE = (ROOT / ".env.example").read_text(encoding="utf-8")
_INTERP_RE = re.compile(r"\$\{([A-Z0-9_]+)(:?[-?][^}]*)?\}")


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return dict(env) if isinstance(env, dict) else dict(e.split("=", 1) for e in env)


def _filled(value: str) -> str:
    """``value`` with each ``${VAR:-default}`` as its default, other ``${…}`` as a word."""
    def one(m: re.Match[str]) -> str:
        rest = m.group(2) or ""
        return rest[2:] if rest.startswith(":-") else f"x{m.group(1).lower()}"

    return _INTERP_RE.sub(one, value)


def _settings_of(service: str) -> Settings:
    """The Settings a cityops service would load (``${…}`` filled in)."""
    env = {k: _filled(v) for k, v in _env(SERVICES[service]).items()
           if not k.endswith("_FILE")}  # secrets mounted as files exist only in the container
    return Settings(**{k.removeprefix("CITYOPS_").lower(): v for k, v in env.items()
                       if k.startswith("CITYOPS_")})


def test_images_are_pinned() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, svc in SERVICES.items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"
        if "build" in svc:
            assert image == f"cityops:{version}", name


def test_every_cityops_variable_is_a_real_setting() -> None:
    known = {f"CITYOPS_{f.upper()}" for f in Settings.model_fields}
    secret_files = {f"CITYOPS_{f.upper()}_FILE" for f, info in Settings.model_fields.items()
                    if "SecretStr" in str(info.annotation)}
    for name in CITYOPS_SERVICES:
        for var in _env(SERVICES[name]):
            assert var.startswith("CITYOPS_") and (var in known or var in secret_files), \
                f"{name}: {var}"
        _settings_of(name)


def test_cityops_services_point_at_compose_hosts_as_the_writer() -> None:
    for name in CITYOPS_SERVICES:
        env = _env(SERVICES[name])
        host, _, port = env["CITYOPS_KAFKA_BOOTSTRAP_SERVERS"].partition(":")
        assert host in SERVICES and port == "9092"
        raw = env["CITYOPS_WAREHOUSE_URL"]
        url = urlparse(_filled(raw))
        assert (url.scheme, url.hostname, url.port) == ("clickhouse", "clickhouse", 9000)
        assert url.username == layout.CLICKHOUSE_WRITER and url.password is None
        # the password: a compose secret read from the environment, mounted as a file
        var = layout.CLICKHOUSE_PASSWORD_ENV[layout.CLICKHOUSE_WRITER]
        (secret,) = [k for k, v in COMPOSE["secrets"].items() if v.get("environment") == var]
        assert env["CITYOPS_WAREHOUSE_PASSWORD_FILE"] == f"/run/secrets/{secret}"
        assert secret in SERVICES[name]["secrets"]
        assert url.path.strip("/") == _env(SERVICES["clickhouse"])["CLICKHOUSE_DB"] == \
            layout.CLICKHOUSE_DATABASE


def test_kafka_listener_matches_bootstrap_and_local_port() -> None:
    k = _env(SERVICES["kafka"])
    assert "PLAINTEXT://kafka:9092" in k["KAFKA_ADVERTISED_LISTENERS"]
    host_port = SERVICES["kafka"]["ports"][0].split(":")[0]
    assert int(host_port) == Settings.model_fields["kafka_port"].default
    assert k["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert "zookeeper" not in SERVICES


def test_topics_are_created_before_anything_uses_them() -> None:
    assert SERVICES["topics"]["command"] == ["kafka", "topics"]  # creates Settings.all_topics
    partitions = {_settings_of(s).topic_partitions for s in CITYOPS_SERVICES}
    assert partitions == {int(_env(SERVICES["kafka"])["KAFKA_NUM_PARTITIONS"])}
    for name in ("worker", "aggregation", "sink", "simulator", "intake"):
        assert SERVICES[name]["depends_on"]["topics"] == {
            "condition": "service_completed_successfully"}
    for name in ("worker", "aggregation", "sink", "grafana"):
        assert SERVICES[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"}


def _published(service: str) -> list[tuple[str, int]]:
    """(host side, container port) of each published port."""
    out = []
    for spec in SERVICES[service].get("ports", []):
        host, _, container = spec.rpartition(":")
        out.append((host, int(container)))
    return out


def test_web_ports_are_published_bound_and_health_checked() -> None:
    for name, setting, path in (("worker", "worker_web", "/health"),
                                ("aggregation", "worker_web", "/health"),
                                ("sink", "worker_web", "/health"),
                                ("intake", "intake", "/healthz")):
        s = _settings_of(name)
        port, host = getattr(s, f"{setting}_port"), getattr(s, f"{setting}_host")
        assert host == "0.0.0.0", f"{name} binds {host}: unreachable from outside its container"
        health = " ".join(SERVICES[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}{path}" in health, name
        if name != "sink":
            assert [c for _, c in _published(name)] == [port], name
    ranges = []
    for name in ("worker", "aggregation"):  # one host port per worker a topic can feed
        first, _, last = _published(name)[0][0].partition("-")
        assert int(last) - int(first) + 1 == _settings_of(name).topic_partitions, name
        ranges.append(range(int(first), int(last) + 1))
    assert not set(ranges[0]) & set(ranges[1])


class _Probe:
    """The health check's request as the door sees it: no Authorization header."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}


@pytest.mark.parametrize("name", ["worker", "aggregation", "sink"])
def test_each_health_check_gets_through_its_service_s_locked_door(name: str,
                                                                   tmp_path: Path) -> None:
    """Compose binds these on 0.0.0.0 with the keys mounted, so every door is locked; the
    health check asks /health with no token, and only the open probes let it through (it
    answered 401 and left the service unhealthy for good before)."""
    from cityops.core.keys import KeyStore
    from cityops.streams.web import admit, worker_gate

    settings = _settings_of(name).model_copy(update={"keys_file": tmp_path / "keys.json"})
    KeyStore(settings.keys_path).add("wall", "worker", roles=("viewer",))  # the README's step
    gate = worker_gate(settings)
    assert gate.enforced, name
    assert admit(gate, _Probe(), "health", settings)[1] is None, name
    refusal = admit(gate, _Probe(), "alerts", settings)[1]  # the other doors stay locked
    assert refusal is not None and refusal[1] == 401, name


def test_the_split_layout_reads_every_topic_once_and_only_with_its_profile() -> None:
    """``CITYOPS_WORKER_STAGES=validation docker compose --profile split up``: ``worker``
    validates and ``aggregation`` aggregates, in the same deployment (worker id), together
    reading what one worker of the default layout reads, each topic once."""
    from cityops.streams.layouts import topics_read

    assert "profiles" not in SERVICES["worker"]
    assert SERVICES["aggregation"]["profiles"] == ["split"]
    default = _settings_of("worker")
    assert default.worker_stages == "all"  # ${CITYOPS_WORKER_STAGES:-all}
    validation = default.model_copy(update={"worker_stages": "validation"})
    aggregation = _settings_of("aggregation")
    assert SERVICES["aggregation"]["command"][-2:] == ["--stages", aggregation.worker_stages]
    assert aggregation.worker_stages == "aggregation"
    assert aggregation.worker_id == validation.worker_id
    assert {k: v for k, v in _env(SERVICES["aggregation"]).items()
            if k != "CITYOPS_WORKER_STAGES"} == {
        k: v for k, v in _env(SERVICES["worker"]).items() if k != "CITYOPS_WORKER_STAGES"}
    read = (topics_read(validation, validation.worker_stages),
            topics_read(aggregation, aggregation.worker_stages))
    assert not read[0] & read[1]
    assert read[0] | read[1] == topics_read(default, "all")


def test_long_running_services_have_health_checks_and_limits() -> None:
    for name, svc in SERVICES.items():
        limits = svc["deploy"]["resources"]["limits"] if "deploy" in svc else None
        if name in LONG_RUNNING:
            assert ("healthcheck" in svc) == (name not in NO_ENDPOINT), name
            assert limits and {"cpus", "memory"} <= set(limits), name
            assert svc["restart"] == "unless-stopped", name


def test_named_volumes_are_declared_and_used() -> None:
    declared = set(COMPOSE["volumes"])
    used = {v.split(":")[0] for svc in SERVICES.values() for v in svc.get("volumes", [])
            if not v.startswith((".", "/"))}
    assert used == declared
    for name in ("kafka", "clickhouse", "grafana"):
        assert any(not v.startswith(".") for v in SERVICES[name]["volumes"]), name


BIND_MOUNTS = {"clickhouse": [(layout.CLICKHOUSE_USERS_XML,
                               "/etc/clickhouse-server/users.d/cityops-users.xml")],
               "grafana": [(layout.GRAFANA_PROVISIONING_DIR, layout.GRAFANA_PROVISIONING_MOUNT),
                           (layout.GRAFANA_DASHBOARDS_DIR, layout.GRAFANA_DASHBOARDS_MOUNT)]}


def test_bind_mounts_are_exactly_the_agreed_paths() -> None:
    found = {(name, src.removeprefix("./"), dst) for name, svc in SERVICES.items()
             for src, dst, *_ in (v.split(":") for v in svc.get("volumes", []))
             if src.startswith(".")}
    expected = {(name, src, dst) for name, pairs in BIND_MOUNTS.items() for src, dst in pairs}
    assert found == expected
    for svc in SERVICES.values():
        for v in svc.get("volumes", []):
            if v.startswith("."):
                assert v.endswith(":ro"), v


@pytest.mark.parametrize("path", [p for pairs in BIND_MOUNTS.values() for p, _ in pairs])
def test_mounted_files_exist_in_the_repo(path: str) -> None:
    if not (ROOT / path).exists():
        pytest.xfail(f"{path} is written by another area (users / boards) and not on this "
                     "branch yet: compose would mount nothing")
    assert (ROOT / path).exists()


def test_clickhouse_users_file_defines_the_users_compose_uses() -> None:
    xml = ROOT / layout.CLICKHOUSE_USERS_XML
    if not xml.exists():
        pytest.xfail(f"{layout.CLICKHOUSE_USERS_XML} not on this branch yet")
    text = xml.read_text(encoding="utf-8")
    users = re.search(r"<users>(.*)</users>", text, re.S).group(1)
    assert set(re.findall(r"^\s{8}<(\w+)>", users, re.M)) == set(layout.CLICKHOUSE_PASSWORD_ENV)
    assert set(re.findall(r'from_env="(\w+)"', text)) == set(
        layout.CLICKHOUSE_PASSWORD_ENV.values())
    ch_env = _env(SERVICES["clickhouse"])
    for var in layout.CLICKHOUSE_PASSWORD_ENV.values():
        assert ch_env[var] == f"${{{var}:?set {var} in .env}}"


def test_grafana_reads_the_reader_and_every_provisioning_variable() -> None:
    env = _env(SERVICES["grafana"])
    assert env["CITYOPS_GRAFANA_CLICKHOUSE_USER"] == layout.CLICKHOUSE_READER
    reader_env = layout.CLICKHOUSE_PASSWORD_ENV[layout.CLICKHOUSE_READER]
    assert env["CITYOPS_GRAFANA_CLICKHOUSE_PASSWORD"].startswith(f"${{{reader_env}:")
    assert env["GRAFANA_CLICKHOUSE_HOST"] in SERVICES
    prov = ROOT / layout.GRAFANA_PROVISIONING_DIR
    if not prov.exists():
        pytest.xfail(f"{layout.GRAFANA_PROVISIONING_DIR} not on this branch yet")
    referenced = {m for f in prov.rglob("*.yaml")
                  for m in re.findall(r"\$\{?([A-Z][A-Z0-9_]+)\}?", f.read_text())}
    passed = {k for k in env if k.startswith(("GRAFANA_", "CITYOPS_GRAFANA_"))}
    assert referenced == passed


def test_no_secret_in_the_compose_file_and_every_one_in_the_example() -> None:
    secret_like = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY\b")
    for name, svc in SERVICES.items():
        for var, value in _env(svc).items():
            if secret_like.search(var):
                assert _INTERP_RE.fullmatch(str(value)) or (
                    var.endswith("_FILE") and value.startswith("/run/secrets/")), \
                    f"{name}: {var} has a literal value"
    required = {m.group(1) for m in _INTERP_RE.finditer(COMPOSE_TEXT)
                if (m.group(2) or "").startswith(":?")}
    optional = {m.group(1) for m in _INTERP_RE.finditer(COMPOSE_TEXT)} - required
    example = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE, re.M))
    assert required <= set(re.findall(r"^([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE, re.M))
    assert example == required | optional
    assert not re.search(r"^[A-Z_]+=\S", ENV_EXAMPLE, re.M), ".env.example holds a value"


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


@pytest.mark.parametrize("service", CITYOPS_SERVICES)
def test_service_commands_exist_in_the_cli(service: str) -> None:
    command = SERVICES[service]["command"]
    cmd = _resolve(command)
    assert not _is_group(cmd), f"{service}: {command} names a group"
    opts = {o for p in cmd.params
            for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
    for word in command:
        if word.startswith("--"):
            assert word in opts, f"{service}: {word} is not an option of {command[0]}"
