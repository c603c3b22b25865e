"""The assembly of the processes: a streams worker, with or without the warehouse sink.

``streams/`` and ``warehouse/`` know nothing of each other's runtime; this module, beside
the commands that start the processes (``cityops worker``, ``cityops sink``, ``cityops run``),
puts them together.
"""

from __future__ import annotations

from typing import Any

from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.streams.worker import StreamsWorker
from cityops.warehouse.access import open_warehouse, sql_handler
from cityops.warehouse.base import Warehouse
from cityops.warehouse.sink import WarehouseSink


def sink_health(sink: WarehouseSink) -> dict[str, Any]:
    """The sink's part of ``/health``."""
    st = sink.stats
    return {"ok": sink.alive and sink.error is None, "batches": st.batches,
            "rows": st.rows, "messages": st.messages, "errors": st.errors,
            "skipped": st.skipped, "last_batch_s": round(st.last_batch_s, 4),
            "error": None if sink.error is None else str(sink.error)[:300]}


def build_worker(settings: Settings, registry: Registry, *, with_sink: bool = True,
                 warehouse: Warehouse | None = None) -> StreamsWorker:
    """The streams worker; with the warehouse sink inside it (and ``/sql`` in embedded
    mode) unless ``with_sink`` is off — then a separate ``cityops sink`` writes the
    warehouse and several workers can share the partitions."""
    if not with_sink:
        return StreamsWorker(settings, registry)
    wh = warehouse or open_warehouse(settings, registry)
    sink = WarehouseSink(settings, wh)
    embedded = settings.effective_warehouse_url.startswith("chdb:")
    # the warehouse closes after the sink's last batch: an embedded (chdb) session left open
    # at interpreter exit is torn down by chdb's static destructors while its thread pools
    # still run (seen: a worker whose Python had finished, stuck for a minute in a mutex in
    # chdb's exit handler until `cityops run` killed it)
    return StreamsWorker(settings, registry, services=[sink], closing=[wh.close],
                         sql_handler=sql_handler(wh, settings) if embedded else None,
                         health_extra=lambda: sink_health(sink))
