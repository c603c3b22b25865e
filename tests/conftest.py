"""Shared fixtures: settings, the site registry, and the real local Kafka broker.

The broker fixture uses the same launcher as ``cityops kafka up``: it reuses a broker that
``make test`` already started, or starts one itself (and then stops it at the end).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cityops.core.feeds import ValidationContext
from cityops.core.registry import Registry, load_registry
from cityops.core.settings import Settings, load_settings

os.environ.setdefault("CITYOPS_DATA_DIR", str(Path(__file__).resolve().parent.parent
                                              / ".cityops-test"))
os.environ.setdefault("CITYOPS_KAFKA_PORT", "19392")


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def registry(settings: Settings) -> Registry:
    return load_registry(settings.registry_dir)


@pytest.fixture(scope="session")
def vctx(registry: Registry) -> ValidationContext:
    """Validation context with the packaged Yuzhong registry and the default tolerances."""
    return ValidationContext(registry=registry)


@pytest.fixture(scope="session")
def kafka_broker(settings: Settings) -> Iterator[str]:
    """Bootstrap address of a real, running local Kafka broker (KRaft)."""
    from cityops.deploy.kafka_local import LocalKafka

    broker = LocalKafka(settings)
    was_running = broker.pid() is not None and broker.answering()
    broker.up()
    yield broker.bootstrap
    if not was_running:
        broker.down()


@pytest.fixture
def topic_name() -> str:
    """A fresh topic name so tests never see each other's messages."""
    return f"test.{uuid.uuid4().hex[:12]}"


NGSI_LD_DATA = Path(__file__).resolve().parent / "data" / "ngsi_ld"
# the external ids of the Smart Data Models examples, mapped the way a city adopting them
# would map its own: in the registry, on the entries they report for
EXAMPLE_MAPPINGS = {
    ("stations.yaml", "stations", "aq_jiefangbei"):
        ["urn:ngsi-ld:PointOfInterest:28079004-Pza.deEspanya"],
    ("counters.yaml", "counters", "fc_minzu_road_01"):
        ["urn:ngsi-ld:CrowdFlowObserved:Valladolid_1"],
}
# the parking example's car park has 414 spaces: a car park of that size joins the registry
EXAMPLE_CARPARK = {"id": "cp_example_trindade", "name_zh": "示例停车场",
                   "name_en": "Example car park (414 spaces)", "capacity": 414,
                   "lat": 29.5598, "lon": 106.5735,
                   "external_ids": ["urn:ngsi-ld:OffStreetParking:porto-ParkingLot-23889"]}


def write_example_registry(source: Path, target: Path) -> Path:
    """A copy of the registry in ``source`` with the Smart Data Models examples' ids mapped."""
    import shutil

    import yaml

    shutil.copytree(source, target)
    for (fname, section, entry_id), ids in EXAMPLE_MAPPINGS.items():
        path = target / fname
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for entry in data[section]:
            if entry["id"] == entry_id:
                entry["external_ids"] = ids
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    path = target / "carparks.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["carparks"].append(EXAMPLE_CARPARK)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return target


@pytest.fixture(scope="session")
def example_registry(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """The Yuzhong registry plus the id mappings of the Smart Data Models examples."""
    target = tmp_path_factory.mktemp("registry") / "yuzhong"
    return load_registry(write_example_registry(settings.registry_dir, target))


@pytest.fixture
def ngsi_ld_example():
    """``ngsi_ld_example(name)``: a fresh copy of one example fixture (``tests/data/ngsi_ld``)."""
    import orjson

    def _load(name: str) -> dict:
        return orjson.loads((NGSI_LD_DATA / f"{name}.jsonld").read_bytes())

    return _load


# --- tests that need clickhouse-server ---------------------------------------------------------
#: set by scripts/test.sh when clickhouse-server cannot be installed here; the reason why
WITHOUT_SERVER = "CITYOPS_TEST_WITHOUT_SERVER"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses the server fixture ``server``; when ``make test`` found no
    clickhouse-server, deselect those tests and remember them for the summary."""
    for item in items:
        if "clickhouse_port" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.server)
    reason = os.environ.get(WITHOUT_SERVER)
    if not reason:
        return
    missing = [item for item in items if item.get_closest_marker("server") is not None]
    if missing:
        items[:] = [item for item in items if item not in missing]
        config.hook.pytest_deselected(items=missing)
    config.stash[_NOT_RUN] = (reason, [item.nodeid for item in missing])


_NOT_RUN = pytest.StashKey[tuple[str, list[str]]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    """Name each test that could not run for want of clickhouse-server, and why."""
    if _NOT_RUN not in config.stash:
        return
    reason, nodeids = config.stash[_NOT_RUN]
    terminalreporter.section(f"{len(nodeids)} tests could NOT run: {reason}", red=True)
    for nodeid in nodeids:
        terminalreporter.write_line(f"NOT RUN {nodeid} — needs clickhouse-server: {reason}")
