"""deploy/k8s validated offline: built-in kinds with kubernetes-validate's bundled schemas,
Strimzi kinds with the CRDs Strimzi's own generator writes (scripts/services.d/
strimzi-crds-up.sh), Altinity kinds with our minimal schema; each validator is shown to fail
on a broken manifest. The kustomize overlays are rendered and the rendered output validated,
then cross-checked against the code: topics, ports, probes, commands and settings."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from cityops.core.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kustomize_render import RenderError, apply_op, render
from test_compose import _is_group, _resolve

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("pilot", "city")
K8S_VERSION = "1.33.0"
STRIMZI_KINDS = {"Kafka": "kafka", "KafkaNodePool": "kafkanodepool",
                 "KafkaTopic": "kafkatopic", "KafkaUser": "kafkauser"}
ALTINITY_KINDS = {"ClickHouseInstallation", "ClickHouseKeeperInstallation"}
ALTINITY_SCHEMA = json.loads((K8S / "schemas" / "altinity-minimal.schema.json").read_text())


@cache
def strimzi_dir() -> Path:
    """The generated CRDs (generated on first use when make test's hook has not run)."""
    cache_dir = Path(os.environ.get("CITYOPS_CACHE_DIR", Path.home() / ".cache" / "cityops"))
    out = cache_dir / "strimzi" / "0.45.0" / "crds"
    if not (out / ".complete").exists():
        subprocess.run([str(ROOT / "scripts" / "services.d" / "strimzi-crds-up.sh")],
                       check=True)
    return out


@cache
def strimzi_schema(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((strimzi_dir() / f"{STRIMZI_KINDS[kind]}.yaml").read_text())
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta2"]
    return version["schema"]["openAPIV3Schema"]


def validate(obj: dict[str, Any]) -> None:
    """Raise when ``obj`` breaks the schema of its kind; every kind must have one."""
    kind = obj["kind"]
    if kind in STRIMZI_KINDS:
        assert obj["apiVersion"] == "kafka.strimzi.io/v1beta2", obj["apiVersion"]
        jsonschema.validate(obj, strimzi_schema(kind))
    elif kind in ALTINITY_KINDS:
        jsonschema.validate(obj, ALTINITY_SCHEMA)
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(K8S / "overlays" / request.param)


def by(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind
            and (name is None or o["metadata"]["name"] == name)]


def test_every_rendered_manifest_is_valid(rendered: list[dict[str, Any]]) -> None:
    assert len(rendered) > 25
    for obj in rendered:
        validate(obj)


BROKEN = {
    "Deployment": lambda o: o["spec"]["template"]["spec"]["containers"][0].update(
        {"ports": [{"containerPort": "web"}]}),
    "Kafka": lambda o: o["spec"]["kafka"]["listeners"][0].update({"type": "nodeport-ish"}),
    "KafkaTopic": lambda o: o["spec"].update({"partitions": "many"}),
    "KafkaNodePool": lambda o: o["spec"].update({"roles": ["broker", "zookeeper"]}),
    "ClickHouseInstallation": lambda o: o["spec"]["configuration"]["clusters"][0][
        "layout"].update({"shards": 2}),
    "ClickHouseKeeperInstallation": lambda o: o["spec"].pop("configuration"),
    "Service": lambda o: o["spec"].update({"ports": [{"port": "http"}]}),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_each_validator_refuses_a_broken_manifest(kind: str) -> None:
    objs = render(K8S / "overlays" / "pilot")
    good = by(objs, kind)[0]
    validate(good)
    bad = copy.deepcopy(good)
    BROKEN[kind](bad)
    with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)):
        validate(bad)


def test_kafka_replicates_three_times_with_two_in_sync(rendered: list[dict[str, Any]]) -> None:
    (kafka,) = by(rendered, "Kafka")
    cfg = kafka["spec"]["kafka"]["config"]
    assert cfg["default.replication.factor"] == 3 and cfg["min.insync.replicas"] == 2
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert "zookeeper" not in kafka["spec"]
    pools = by(rendered, "KafkaNodePool")
    assert sum(p["spec"]["replicas"] for p in pools) >= 3
    assert {r for p in pools for r in p["spec"]["roles"]} == {"controller", "broker"}


def test_a_kafka_topic_for_every_platform_topic(rendered: list[dict[str, Any]]) -> None:
    topics = {t["spec"]["topicName"]: t for t in by(rendered, "KafkaTopic")}
    assert sorted(topics) == sorted(Settings().all_topics)
    for t in topics.values():
        assert t["spec"]["replicas"] == 3
        assert t["spec"]["config"]["min.insync.replicas"] == 2
        assert t["metadata"]["labels"]["strimzi.io/cluster"] == "cityops"
    (env,) = by(rendered, "ConfigMap", "cityops-env")
    partitions = {t["spec"]["partitions"] for t in topics.values()}
    assert partitions == {int(env["data"]["CITYOPS_TOPIC_PARTITIONS"])}


def test_workers_scale_up_to_the_partition_count(rendered: list[dict[str, Any]]) -> None:
    partitions = by(rendered, "KafkaTopic")[0]["spec"]["partitions"]
    (hpa,) = by(rendered, "HorizontalPodAutoscaler", "cityops-worker")
    (worker,) = by(rendered, "Deployment", "cityops-worker")
    assert hpa["spec"]["maxReplicas"] == partitions
    assert hpa["spec"]["minReplicas"] <= worker["spec"]["replicas"] <= partitions


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    pod = obj["spec"]["template"]["spec"]
    return pod.get("initContainers", []) + pod["containers"]


def _has_command(name: str) -> bool:
    import typer

    from cityops.cli.main import app

    cmd = typer.main.get_command(app)
    return cmd.get_command(type(cmd).context_class(cmd), name) is not None


@pytest.mark.xfail(not _has_command("dashboards"), strict=True,
                   reason="Grafana's init container runs `cityops dashboards build`, which the "
                   "boards work adds; until it is merged this check reports the gap")
def test_cityops_containers_run_real_commands_and_settings(
        rendered: list[dict[str, Any]]) -> None:
    known = {f"CITYOPS_{f.upper()}" for f in Settings.model_fields}
    (env,) = by(rendered, "ConfigMap", "cityops-env")
    assert set(env["data"]) <= known, set(env["data"]) - known
    Settings(**{k.removeprefix("CITYOPS_").lower(): v for k, v in env["data"].items()})
    seen = set()
    for obj in by(rendered, "Deployment") + by(rendered, "Job"):
        for c in _containers(obj):
            if not c["image"].startswith("registry.local/cityops:"):
                continue
            cmd = _resolve(c["args"])
            assert not _is_group(cmd), c["args"]
            seen.add(c["args"][0])
            for var in c.get("env", []):
                assert not var["name"].startswith("CITYOPS_") or var["name"] in known
    assert {"worker", "sink", "intake", "warehouse", "dashboards"} <= seen


def test_probes_and_scrape_annotations_match_the_processes(
        rendered: list[dict[str, Any]]) -> None:
    (env,) = by(rendered, "ConfigMap", "cityops-env")
    web = int(env["data"]["CITYOPS_WORKER_WEB_PORT"])
    intake = int(env["data"]["CITYOPS_INTAKE_PORT"])
    assert env["data"]["CITYOPS_WORKER_WEB_HOST"] == "0.0.0.0"
    for name, port, path in (("cityops-worker", web, "/health"), ("cityops-sink", web,
                             "/health"), ("cityops-intake", intake, "/healthz")):
        (dep,) = by(rendered, "Deployment", name)
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe in ("readinessProbe", "livenessProbe"):
            get = c[probe]["httpGet"]
            assert get["path"] == path and ports[get["port"]] == port, (name, probe)
        ann = dep["spec"]["template"]["metadata"].get("annotations", {})
        if name != "cityops-intake":  # the intake has no /metrics
            assert ann["prometheus.io/scrape"] == "true"
            assert int(ann["prometheus.io/port"]) == port and ann["prometheus.io/path"] == \
                "/metrics"


def test_clickhouse_cluster_matches_the_migration_job(rendered: list[dict[str, Any]]) -> None:
    (chi,) = by(rendered, "ClickHouseInstallation")
    (job,) = by(rendered, "Job", "cityops-migrate")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    cluster = args[args.index("--cluster") + 1]
    assert cluster in [c["name"] for c in chi["spec"]["configuration"]["clusters"]]
    users = chi["spec"]["configuration"]["users"]
    assert {k.split("/")[0] for k in users} == {"cityops_writer", "cityops_reader"}
    assert chi["spec"]["configuration"]["profiles"]["cityops_reader/readonly"] == 1
    assert all("password" not in k or k.endswith("k8s_secret_password") for k in users)


def test_images_are_pinned(rendered: list[dict[str, Any]]) -> None:
    for obj in by(rendered, "Deployment") + by(rendered, "Job"):
        for c in _containers(obj):
            assert ":" in c["image"] and not c["image"].endswith(":latest"), c["image"]


def test_city_overlay_is_bigger_than_the_pilot() -> None:
    pilot, city = render(K8S / "overlays" / "pilot"), render(K8S / "overlays" / "city")
    assert by(city, "KafkaTopic")[0]["spec"]["partitions"] > \
        by(pilot, "KafkaTopic")[0]["spec"]["partitions"]
    shards = [by(o, "ClickHouseInstallation")[0]["spec"]["configuration"]["clusters"][0]
              ["layout"]["shardsCount"] for o in (pilot, city)]
    assert shards[1] > shards[0]


def test_renderer_refuses_what_it_cannot_render(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nconfigMapGenerator: []\n")
    with pytest.raises(RenderError, match="unsupported"):
        render(tmp_path)
    with pytest.raises(RenderError, match="nothing to replace"):
        apply_op({"spec": {}}, {"op": "replace", "path": "/spec/replicas", "value": 2})
