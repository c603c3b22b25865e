"""The sink's marks: the newest event its raw tables hold per site and sensor (source).

Before each raw-table insert the sink drops the batch's events the table already holds
(``sink.WarehouseSink._without_stored``): the rollup views count on insert, so a replayed or
re-published event must not reach them twice. Asking the warehouse for every batch's ids cost a
query per batch (23-32 ms of the sink's thread for 6,000 rows, a seventh of the sink's samples
in a 1 M-event drain), though a stream read in order almost never brings an event the table
holds.

A stored copy of an event has the event's own time, site and source (the sensor that sent
it), and it travelled in the event's partition (the same record, so the same key), which one
sink of a group reads at a time. So for each raw table, site and source the sink keeps the
newest event time the table holds (``StoredMarks``): learned from the table the first time the
site appears (one ``max(event_time)`` per site and source, ``sink.newest_stored_query``), then
raised by the sink's own inserts. A row newer than its mark cannot be stored already and is not
asked about; a row at or before it (a replay, a re-published event, a late event) is asked
about as before. The marks are forgotten whenever partitions may have changed hands (a
revocation, a fresh consumer): the next batches learn them again from the table. A sensor
reports in order, so nearly every row is newer than its mark. Marks per site alone were not
enough: a zone's counters report seconds apart, out of order with each other, and in a 1 M
drain the query still took 4 % of the sink's samples (12 % before; per sensor, none).

Times compare in whole milliseconds (``DateTime64(3)``, which keeps a time's milliseconds and
drops the rest): a mark is the last instant of its millisecond, and a row is newer only when it
is after that, so a copy is never taken for newer than its stored self. The comparisons are of
datetimes, exact, and cost a fraction of a microsecond a row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: the mark of a site whose table holds none of its events: every row is newer
NOTHING_STORED = datetime.min.replace(tzinfo=UTC)


def millisecond_end(when: datetime) -> datetime:
    """The last instant of ``when``'s millisecond: every time the warehouse stores as that
    millisecond is at or before it."""
    return when.replace(microsecond=when.microsecond // 1000 * 1000 + 999)


def mark_of(ms: int) -> datetime:
    """The mark of a newest stored time read from the table (milliseconds since the epoch)."""
    return millisecond_end(_EPOCH + timedelta(milliseconds=ms))


#: what a mark is kept for: (site, source)
Unit = tuple[str, str]


class StoredMarks:
    """Per raw table, site and source: the newest event time the table holds of them, as the
    last instant of its millisecond."""

    def __init__(self) -> None:
        self._marks: dict[tuple[str, str, str], datetime] = {}
        #: how often every mark was dropped (``forget``)
        self.forgotten = 0

    def __len__(self) -> int:
        return len(self._marks)

    def forget(self) -> None:
        """Drop every mark: partitions may have changed hands, so another sink may have
        written the sites' events meanwhile."""
        self._marks.clear()
        self.forgotten += 1

    def unknown(self, table: str, site_column: str,
                rows: Iterable[Mapping[str, Any]]) -> set[Unit]:
        """The (site, source) of ``rows`` without a mark yet: ask the table (``learn``)."""
        marks = self._marks
        return {unit for unit in {(row[site_column], row["source"]) for row in rows}
                if (table, *unit) not in marks}

    def learn(self, table: str, newest: Mapping[Unit, int | None]) -> None:
        """Marks read from the table: (site, source) → the newest stored time (milliseconds
        since the epoch), None for one the table holds nothing of. Never lowers a mark."""
        for (site, source), ms in newest.items():
            key = (table, site, source)
            value = NOTHING_STORED if ms is None else mark_of(ms)
            known = self._marks.get(key)
            if known is None or value > known:
                self._marks[key] = value

    def to_ask(self, table: str, site_column: str, rows: Mapping[str, Mapping[str, Any]]
               ) -> dict[str, Mapping[str, Any]]:
        """The rows (event id → row) the table may hold already: at or before their site's
        and source's mark, or without one."""
        marks = self._marks
        out: dict[str, Mapping[str, Any]] = {}
        for event_id, row in rows.items():
            mark = marks.get((table, row[site_column], row["source"]))
            if mark is None or row["event_time"] <= mark:
                out[event_id] = row
        return out

    def stored(self, table: str, site_column: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """The rows are in the table now: their marks rise to the newest of them. A site and
        source without a mark get none (what else the table holds of them is not known)."""
        newest: dict[tuple[str, str, str], datetime] = {}
        for row in rows:
            key, when = (table, row[site_column], row["source"]), row["event_time"]
            best = newest.get(key)
            if best is None or when > best:
                newest[key] = when
        marks = self._marks
        for key, when in newest.items():
            mark = marks.get(key)
            if mark is not None and when > mark:
                marks[key] = millisecond_end(when)
