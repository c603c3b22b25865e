"""A worker with the sink inside closes its warehouse when it stops, after the sink.

An embedded (chdb) session still open at interpreter exit is torn down by chdb's static
destructors while its thread pools run: `make run` stopped with Ctrl-C then sometimes waited a
minute for a worker whose Python had already finished (stuck on a mutex in chdb's exit
handler) before killing it.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from cityops.cli.assembly import build_worker
from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.warehouse.embedded import EmbeddedWarehouse
from cityops.warehouse.exceptions import WarehouseError

pytestmark = pytest.mark.integration


class _Recorded(EmbeddedWarehouse):
    """The real embedded warehouse, noting whether the sink had stopped when it closed."""

    sink: object = None
    sink_stopped_first: bool | None = None

    def close(self) -> None:
        if self.sink_stopped_first is None and self._shared is not None:
            stopped = getattr(self.sink, "_stop", None)
            self.sink_stopped_first = bool(stopped is not None and stopped.is_set())
        super().close()


def test_worker_shutdown_closes_the_warehouse_after_the_sink(
        settings: Settings, registry: Registry, tmp_path: Path) -> None:
    db = f"t_{uuid.uuid4().hex[:10]}"
    path = str((settings.data_dir / "warehouse-tests").resolve())  # the suite's chdb path
    wh = _Recorded(path, database=db, url=f"chdb://{path}")
    worker = build_worker(settings.model_copy(update={"data_dir": tmp_path}), registry,
                          warehouse=wh)
    wh.sink = worker.services[0]
    assert wh.query("SELECT 1") == [(1,)]  # open while the worker runs

    asyncio.run(worker._on_shutdown(worker.app))

    assert wh.sink_stopped_first is True
    with pytest.raises(WarehouseError, match="closed"):
        wh.query("SELECT 1")  # released, not left to chdb's exit handlers
    with EmbeddedWarehouse(path) as cleanup:
        cleanup.execute(f"DROP DATABASE IF EXISTS {db} SYNC")
