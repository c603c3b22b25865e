"""The committed provisioning files are what the code generates, and compose mounts them."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from cityops.dashboards.provisioning import CONTAINER_BOARDS, Bundle

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "deploy" / "grafana"


def test_committed_files_equal_the_generated_ones(bundle: Bundle) -> None:
    on_disk = {p.relative_to(COMMITTED).as_posix(): p.read_text(encoding="utf-8")
               for p in COMMITTED.rglob("*") if p.is_file()}
    assert set(on_disk) == set(bundle.files), "run `cityops dashboards build`"
    stale = [rel for rel, text in bundle.files.items() if on_disk[rel] != text]
    assert not stale, f"stale generated files {stale}: run `cityops dashboards build`"


def test_build_command_writes_the_same_files(tmp_path: Path, bundle: Bundle) -> None:
    from typer.testing import CliRunner

    from cityops.cli.main import app

    result = CliRunner().invoke(app, ["dashboards", "build", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for rel, text in bundle.files.items():
        assert (tmp_path / rel).read_text(encoding="utf-8") == text


def _grafana_service() -> dict:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return compose["services"]["grafana"]


def test_compose_mounts_the_provisioning_and_the_boards() -> None:
    volumes = _grafana_service()["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    assert f"./deploy/grafana/dashboards:{CONTAINER_BOARDS}:ro" in volumes
    for v in volumes:
        host = v.split(":")[0]
        if host.startswith("./"):
            assert (ROOT / host).is_dir(), f"{host} does not exist"


def test_every_variable_the_provisioning_interpolates_is_set_in_compose(bundle: Bundle) -> None:
    env = _grafana_service()["environment"]
    used = set()
    for rel, text in bundle.files.items():
        if rel.startswith("provisioning/"):
            used |= set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)\}?", text))
    assert used, "provisioning reads its secrets from the environment"
    assert used <= set(env), f"not set for the grafana service: {used - set(env)}"


def test_alert_rules_are_in_the_file_provisioning_format(bundle: Bundle) -> None:
    doc = yaml.safe_load(bundle.files["provisioning/alerting/cityops-rules.yaml"])
    assert doc["apiVersion"] == 1
    for group in doc["groups"]:
        assert isinstance(group["interval"], str) and group["folder"]
        for rule in group["rules"]:
            assert not {"folderUID", "orgID", "ruleGroup"} & set(rule)
            assert re.fullmatch(r"\d+s", rule["for"]) and re.fullmatch(r"\d+s",
                                                                       rule["keepFiringFor"])
            for q in rule["data"]:
                assert isinstance(q["relativeTimeRange"]["from"], int)
    notify = yaml.safe_load(bundle.files["provisioning/alerting/cityops-notify.yaml"])
    types = {r["type"] for cp in notify["contactPoints"] for r in cp["receivers"]}
    assert types == {"webhook", "wecom", "dingding"}


def test_datasource_is_provisioned_with_the_read_only_user_from_the_environment(
        bundle: Bundle) -> None:
    ds = yaml.safe_load(bundle.files["provisioning/datasources/cityops.yaml"])["datasources"][0]
    assert ds["type"] == "grafana-clickhouse-datasource" and ds["uid"] == "cityops-clickhouse"
    assert ds["jsonData"]["username"] == "${CITYOPS_GRAFANA_CLICKHOUSE_USER}"
    assert ds["secureJsonData"]["password"] == "${CITYOPS_GRAFANA_CLICKHOUSE_PASSWORD}"
