"""A sink batch writes the events' raw tables before the derived tables.

Each insert costs the embedded warehouse 15-60 ms whatever its size, and a batch touches
about a dozen tables; the events' rows (what the boards and the latency figure read) no
longer wait for the windows', states' and dead letters' inserts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.streams.records import FootfallWindow
from cityops.warehouse.rows import FEED_TABLES, event_row, record_row
from cityops.warehouse.sink import Batch, WarehouseSink
from cityops.warehouse.synth import synth_events

pytestmark = pytest.mark.integration


class RecordingSink(WarehouseSink):
    """The real sink's flush into the real warehouse, noting the order of its inserts; the
    offsets are noted, not committed (no consumer here: the order is the subject)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.order: list[str] = []
        self.committed: list[Batch] = []

    def _insert(self, table: str, rows: list[dict[str, Any]], token: str) -> None:
        self.order.append(table)
        super()._insert(table, rows, token)

    def _commit(self, batch: Batch) -> None:
        self.committed.append(batch)


def test_a_batch_inserts_the_raw_tables_before_the_derived_ones(
        settings: Settings, registry: Registry, schema_wh: Any) -> None:
    start = datetime(2026, 11, 20, 10, tzinfo=UTC)
    batch = Batch()
    zone = next(iter(registry.zones))
    window = FootfallWindow(
        zone_id=zone, window="tumbling_1m", window_start=start,
        window_end=start + timedelta(minutes=1), entries=3, exits=1, events=2,
        net_presence=2.0, density_ppm2=0.01, revision=0, emitted_at=start)
    table, row = record_row(window)  # a derived record arrives first in the batch
    batch.add_offset("agg.footfall", 0, 0)
    batch.add_row(table, row)
    for i, ev in enumerate(synth_events(registry, start, start + timedelta(hours=1))):
        batch.add_offset("clean", 0, i + 1)
        batch.add_row(*event_row(ev, ingested_at=start))
    sink = RecordingSink(settings, schema_wh, topics=["unused"])
    sink._flush(batch)

    raw = [t for t in sink.order if t in FEED_TABLES.values()]
    assert len(raw) >= 2 and "footfall_windows" in sink.order
    assert sink.order[:len(raw)] == raw  # every raw table before any derived one
    assert sink.committed == [batch]
    stored = schema_wh.query("SELECT count() FROM footfall_windows WHERE zone_id = {z:String}",
                             {"z": zone})
    assert stored[0][0] == 1
