"""The sink's marks of the newest stored event per raw table, site and source: which rows of a
batch it still asks the warehouse about (``warehouse.stored_marks``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from cityops.warehouse.stored_marks import StoredMarks, mark_of, millisecond_end

T0 = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp()) * 1000


def row(i: int, zone: str = "z1", *, at: datetime | None = None, source: str = "c1") -> dict:
    return {"event_id": f"e{i}", "zone_id": zone, "source": source,
            "event_time": at if at is not None else T0 + timedelta(seconds=i)}


def batch(*rows: dict) -> dict[str, dict]:
    return {r["event_id"]: r for r in rows}


def test_a_site_and_source_without_a_mark_are_asked_about_and_named_for_learning() -> None:
    marks = StoredMarks()
    rows = batch(row(1), row(2, "z2"))
    assert marks.unknown("footfall_observed", "zone_id", rows.values()) == {
        ("z1", "c1"), ("z2", "c1")}
    assert marks.to_ask("footfall_observed", "zone_id", rows) == rows


def test_rows_newer_than_the_newest_stored_are_not_asked_about() -> None:
    marks = StoredMarks()
    marks.learn("footfall_observed", {("z1", "c1"): T0_MS + 5_000, ("z2", "c1"): None})
    rows = batch(row(4), row(5), row(6), row(7, "z2"), row(-100, "z2"))
    # at or before the mark: may be stored (a replay, a re-published or late event)
    assert set(marks.to_ask("footfall_observed", "zone_id", rows)) == {"e4", "e5"}
    assert marks.unknown("footfall_observed", "zone_id", rows.values()) == set()


def test_marks_belong_to_one_table() -> None:
    marks = StoredMarks()
    marks.learn("footfall_observed", {("z1", "c1"): None})
    rows = batch(row(1))
    assert marks.to_ask("incidents_reported", "zone_id", rows) == rows
    assert marks.unknown("incidents_reported", "zone_id", rows.values()) == {("z1", "c1")}


def test_the_sinks_own_inserts_raise_the_marks_so_a_copy_later_is_asked_about() -> None:
    marks = StoredMarks()
    marks.learn("footfall_observed", {("z1", "c1"): None})
    marks.stored("footfall_observed", "zone_id", [row(1), row(9), row(3)])
    later = batch(row(9), row(10))  # e9 re-published after a worker's restart
    assert set(marks.to_ask("footfall_observed", "zone_id", later)) == {"e9"}


def test_an_insert_gives_no_mark_to_a_site_never_learned() -> None:
    """What else the table holds of such a site is not known: it is still asked about."""
    marks = StoredMarks()
    marks.stored("footfall_observed", "zone_id", [row(9)])
    assert len(marks) == 0
    assert set(marks.to_ask("footfall_observed", "zone_id", batch(row(10)))) == {"e10"}


def test_learning_never_lowers_a_mark() -> None:
    marks = StoredMarks()
    marks.learn("footfall_observed", {("z1", "c1"): T0_MS + 9_000})
    marks.learn("footfall_observed", {("z1", "c1"): T0_MS + 1_000})
    marks.learn("footfall_observed", {("z1", "c1"): None})
    assert set(marks.to_ask("footfall_observed", "zone_id", batch(row(9), row(10)))) == {"e9"}


def test_forgetting_asks_about_every_site_again() -> None:
    marks = StoredMarks()
    marks.learn("footfall_observed", {("z1", "c1"): None})
    marks.forget()
    assert marks.forgotten == 1
    rows = batch(row(1))
    assert marks.to_ask("footfall_observed", "zone_id", rows) == rows
    assert marks.unknown("footfall_observed", "zone_id", rows.values()) == {("z1", "c1")}


def test_a_copy_with_microseconds_is_never_newer_than_its_stored_milliseconds() -> None:
    """``DateTime64(3)`` keeps a time's milliseconds: a mark is the last instant of its
    millisecond, so a copy whose time has microseconds is at or before its stored self's."""
    at = T0 + timedelta(microseconds=123_999)
    assert millisecond_end(at) == T0 + timedelta(microseconds=123_999)
    assert millisecond_end(T0 + timedelta(microseconds=123_000)) == at
    assert mark_of(T0_MS + 123) == at
    marks = StoredMarks()
    marks.learn("footfall_observed", {("z1", "c1"): T0_MS + 123})  # as the table holds it
    assert set(marks.to_ask("footfall_observed", "zone_id", batch(row(1, at=at)))) == {"e1"}
    # the next millisecond is newer
    later = T0 + timedelta(microseconds=124_000)
    assert marks.to_ask("footfall_observed", "zone_id", batch(row(2, at=later))) == {}


def test_an_insert_marks_the_end_of_its_newest_rows_millisecond() -> None:
    marks = StoredMarks()
    marks.learn("footfall_observed", {("z1", "c1"): None})
    marks.stored("footfall_observed", "zone_id", [row(1, at=T0 + timedelta(microseconds=5_200))])
    same_ms = T0 + timedelta(microseconds=5_900)  # a copy stored as the same millisecond
    assert set(marks.to_ask("footfall_observed", "zone_id", batch(row(1, at=same_ms)))) == {"e1"}
    assert marks.to_ask("footfall_observed", "zone_id",
                        batch(row(2, at=T0 + timedelta(microseconds=6_000)))) == {}


def test_marks_compare_times_in_any_zone() -> None:
    """Rows carry the zone they were written in (+08:00), marks are UTC."""
    marks = StoredMarks()
    marks.learn("footfall_observed", {("z1", "c1"): T0_MS + 5_000})
    cst = timezone(timedelta(hours=8))
    rows = batch(row(5, at=(T0 + timedelta(seconds=5)).astimezone(cst)),
                 row(6, at=(T0 + timedelta(seconds=6)).astimezone(cst)))
    assert set(marks.to_ask("footfall_observed", "zone_id", rows)) == {"e5"}


def test_each_source_of_a_site_has_its_own_mark() -> None:
    """A zone's counters report out of order with each other: a report of one counter older
    than another's newest stored one is still new when its own counter's mark is older."""
    marks = StoredMarks()
    marks.learn("footfall_observed", {("z1", "c1"): T0_MS + 9_000, ("z1", "c2"): T0_MS + 3_000})
    rows = batch(row(5, source="c2"), row(3, source="c2"), row(8, source="c1"))
    assert set(marks.to_ask("footfall_observed", "zone_id", rows)) == {"e3", "e8"}
    assert marks.unknown("footfall_observed", "zone_id", [row(1, source="c3")]) == {("z1", "c3")}
    marks.stored("footfall_observed", "zone_id", [row(5, source="c2")])
    assert set(marks.to_ask("footfall_observed", "zone_id", batch(row(5, source="c2"),
                                                                  row(6, source="c2")))) == {"e5"}
