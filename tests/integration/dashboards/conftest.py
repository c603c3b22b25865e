"""Fixtures: real chdb warehouses holding the boards' simulated data.

chdb allows one on-disk path per process, so these live under the same path as the warehouse
tests (``$CITYOPS_DATA_DIR/warehouse-tests``), each in its own database, dropped at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest

from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.dashboards import fixtures
from cityops.dashboards.provisioning import Bundle, generate
from cityops.streams.alerts.rules import RuleSet, load_rules
from cityops.warehouse.backend import Warehouse, connect
from cityops.warehouse.migrate import migrate

#: days of history: enough monthly partitions for long-range queries to skip some
HISTORY_DAYS = 90


def fresh_warehouse(settings: Settings, registry: Registry) -> Warehouse:
    path = (settings.data_dir / "warehouse-tests").resolve()
    db = f"b_{uuid.uuid4().hex[:10]}"
    wh = connect(f"chdb://{path}?database={db}", settings=settings)
    migrate(wh, timezone=settings.timezone, raw_ttl_days=0, registry=registry)
    return wh


def drop(wh: Warehouse) -> None:
    wh.execute(f"DROP DATABASE IF EXISTS {wh.database} SYNC")  # type: ignore[attr-defined]
    wh.close()


@pytest.fixture(scope="package")
def rules() -> RuleSet:
    return load_rules()


@pytest.fixture(scope="package")
def bundle(settings: Settings, registry: Registry, rules: RuleSet) -> Bundle:
    return generate(settings, registry, rules)


@pytest.fixture(scope="package")
def board_end(settings: Settings) -> datetime:
    return fixtures.default_end(settings.timezone)


@pytest.fixture(scope="package")
def boards_wh(settings: Settings, registry: Registry, rules: RuleSet,
              board_end: datetime) -> Iterator[Warehouse]:
    """90 days of simulated history and 6 live hours ending on the National Day night."""
    wh = fresh_warehouse(settings, registry)
    fixtures.fill(wh, registry, rules, timezone=settings.timezone, end=board_end,
                  raw_days=HISTORY_DAYS, live_hours=6)
    yield wh
    drop(wh)
