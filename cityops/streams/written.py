"""Clean events a worker wrote, kept for its own aggregation step instead of decoding again.

The validation step of a feed publishes each accepted event to ``clean.<feed>`` as the JSON
of its fast struct (``core.fast_contract``); the aggregation step reads the same bytes back
from Kafka and decoded them again (``decode_clean``: 7–10 µs each when this was written,
about a twentieth of the worker's CPU per event). When the clean partition is this worker's
too, the struct the validation step already holds is the one that decode would give
(``decode_clean(ev.to_json()) == ev``: ``tests/unit/streams/test_written_events.py`` checks
it on the simulator's records), so the aggregation step takes it by the record's bytes.
Kafka stays the only way between the steps: an event is taken only when its record was read
back, in the record's order, and a record another worker wrote, or one not kept, is decoded
as before.

What is kept, and for how long:

* only events whose record key (zone, car park, station) the aggregation step has read since
  the last rebalance: a key whose clean partition is another worker's is never read here;
* at most ``CITYOPS_WORKER_REUSE_EVENTS``; a full map refuses newer events rather than drop
  older ones. While a backlog drains, the validation step runs ahead of the aggregation
  step, which reads the oldest records next: dropping those would make every read miss once
  the lag passed the bound, while keeping them leaves a hit for every event kept;
* everything is dropped when a rebalance moves partitions (rare; a miss is only a decode).
"""

from __future__ import annotations

from cityops.core.fast_contract import FastEvent


class WrittenEvents:
    """A feed's clean events by their record's bytes, from the write to the read back."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._events: dict[bytes, FastEvent] = {}
        #: the keys of clean records the aggregation step read since the last rebalance
        self.keys: set[str] = set()

    def __len__(self) -> int:
        return len(self._events)

    def put(self, value: bytes, event: FastEvent, key: str) -> bool:
        """Keep ``event``, published as ``value`` with ``key``, if records of that key are
        read here and there is room; True when kept."""
        events = self._events
        if len(events) >= self.limit or key not in self.keys:
            return False
        events[value] = event
        return True

    def take(self, value: bytes) -> FastEvent | None:
        """The event published as ``value`` (once), or None: decode the record."""
        if type(value) is not bytes:  # e.g. a tombstone: the decoder says what it is
            return None
        return self._events.pop(value, None)

    def clear(self) -> None:
        """Forget every event and key (a rebalance: the keys read here may have moved)."""
        self._events.clear()
        self.keys.clear()
