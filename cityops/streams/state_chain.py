"""A unit's state on its log as a full snapshot followed by the steps' changes to it.

An aggregation step used to write the whole state of every unit it touched. A footfall zone
whose counters are read at different speeds (several workers catching up a backlog) holds
hours of windows open, and its state grew to 100–400 kB, written again at every step that
touched the zone: 82.5 MB of ``state-footfall`` for 100,000 events with three workers,
against 3.3 MB with one. A step changes a few of those windows. So a unit's log is now a
chain:

- a **full** record under the unit's own key, ``{"p", "hw", "state", "seq": n}``, the same
  record as before plus the chain's number ``n`` (a record without one is chain 0);
- then one **change** record per step under ``<unit>~<m>`` (``m`` = 1, 2, …),
  ``{"u": unit, "p", "hw", "patch", "base": n, "m": m}``: what the step changed in the
  state (``diff``), and the replay high-water marks after it, whole.

Each record is one message, written after the step's outputs were acknowledged and before
its offsets are, as the full snapshot was: a step's state is in the log entirely or not at
all. A read applies a unit's changes of its chain in order onto its full record; changes of
an older chain (their keys are reused by the next chain, so at most ``MAX_CHANGES`` per unit
are ever left) are ignored. A new full record starts the next chain once the changes since
the last one add up to its size, or after ``MAX_CHANGES`` of them, and always at the first
write after a read: a restart reads at most one full record and ``MAX_CHANGES`` small ones
per unit. A change as large as half the full record is written as a full record instead.

Plain data in, plain data out: no Kafka here (``streams.aggregation`` writes the records).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger(__name__)

#: changes after which the next write is a full record (bounds a restart's work per unit)
MAX_CHANGES = 64
#: between a unit and its change number in a change record's key
SEP = "~"

#: a record's value → its bytes on the log
Encode = Callable[[dict[str, Any]], bytes]
#: a JSON object's change: ``{"s": {key: new value}, "d": [removed keys], "p": {key: change
#: of an object kept as an object}}``, each part left out when empty
Patch = dict[str, Any]


def diff(old: dict[str, Any], new: dict[str, Any]) -> Patch:
    """What turns ``old`` into ``new`` (both JSON objects); ``{}`` when they are equal.

    Objects in both are compared first (C speed) and entered only when they differ, so an
    unchanged window costs one comparison. ``old`` must not share changed objects with
    ``new``: a state's snapshot (``to_state``) is a copy, or values replaced, never changed.
    """
    sets: dict[str, Any] = {}
    subs: dict[str, Patch] = {}
    for key, value in new.items():
        if key not in old:
            sets[key] = value
            continue
        before = old[key]
        if before is value or before == value:
            continue
        if isinstance(value, dict) and isinstance(before, dict):
            subs[key] = diff(before, value)
        else:
            sets[key] = value
    dels = [key for key in old if key not in new]
    patch: Patch = {}
    if sets:
        patch["s"] = sets
    if dels:
        patch["d"] = dels
    if subs:
        patch["p"] = subs
    return patch


def apply(doc: dict[str, Any], patch: Patch) -> dict[str, Any]:
    """``doc`` changed by ``patch`` (in place: ``doc`` is a record just read); returns it."""
    for key in patch.get("d", ()):
        doc.pop(key, None)
    for key, sub in patch.get("p", {}).items():
        inner = doc.get(key)
        doc[key] = apply(inner if isinstance(inner, dict) else {}, sub)
    doc.update(patch.get("s", {}))
    return doc


@dataclass
class Position:
    """Where a unit's chain stands in this process."""

    seq: int  #: the chain's number (its full record's ``seq``)
    changes: int = 0  #: change records written on it
    bytes_since: int = 0  #: their bytes
    full_bytes: int = 0  #: the full record's bytes; 0: unknown (read back): a full one next


def is_change(value: dict[str, Any]) -> bool:
    return "patch" in value


def change_key(unit: str, m: int) -> str:
    return f"{unit}{SEP}{m}"


def fold(live: dict[str, dict[str, Any]]
         ) -> tuple[dict[str, dict[str, Any]], dict[str, Position]]:
    """A partition's records as read (key → value) → each unit's snapshot ``{"p", "hw",
    "state"}`` and its chain's position (a full record comes next)."""
    changes: dict[str, dict[int, dict[str, Any]]] = {}
    fulls: dict[str, dict[str, Any]] = {}
    for key, value in live.items():
        if not is_change(value):
            fulls[key] = value
        elif (isinstance(value.get("m"), int) and isinstance(value.get("base"), int)
              and isinstance(value["patch"], dict)):
            changes.setdefault(str(value.get("u")), {})[value["m"]] = value
        else:  # no writer of this log writes one: the unit's chain ends before it
            log.warning("stream.state_change_malformed", key=key,
                        fields=sorted(value)[:10])
    snaps: dict[str, dict[str, Any]] = {}
    positions: dict[str, Position] = {}
    for unit, full in fulls.items():
        seq = int(full.get("seq") or 0)
        state: dict[str, Any] = full.get("state") or {}
        hw = full.get("hw")
        chain = changes.get(unit, {})
        m = 1
        while (change := chain.get(m)) is not None and change.get("base") == seq:
            apply(state, change["patch"])
            hw = change.get("hw")
            m += 1
        snaps[unit] = {"p": full.get("p"), "hw": hw, "state": state}
        positions[unit] = Position(seq=seq)
    return snaps, positions


def next_record(unit: str, position: Position | None, before: dict[str, Any] | None,
                snap: dict[str, Any], encode: Encode) -> tuple[str, bytes, Position]:
    """The record to write for ``snap`` (a unit's new ``{"p", "hw", "state"}``), given its
    previous snapshot ``before`` and chain ``position``: ``(key, encoded value, position
    after it)``. A change is written only while it is under half the chain's full snapshot
    (a unit whose windows close as fast as they open changes most of its state at each
    step: a full snapshot is then no larger, and read alone)."""
    if (position is not None and before is not None and position.full_bytes > 0
            and position.changes < MAX_CHANGES and position.bytes_since < position.full_bytes):
        m = position.changes + 1
        body = encode({"u": unit, "p": snap["p"], "hw": snap["hw"],
                       "patch": diff(before["state"], snap["state"]),
                       "base": position.seq, "m": m})
        if 2 * len(body) < position.full_bytes:
            return change_key(unit, m), body, Position(
                seq=position.seq, changes=m, bytes_since=position.bytes_since + len(body),
                full_bytes=position.full_bytes)
    seq = 1 if position is None else position.seq + 1
    body = encode({**snap, "seq": seq})
    return unit, body, Position(seq=seq, full_bytes=len(body))
