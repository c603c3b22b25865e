"""Dedup of one raw partition by ``event_id``, kept as compact hashes and logged per step.

Producers retry and at-least-once delivery replays, so the same ``event_id`` can arrive more
than once. A partition's memory is a ``SeenIds`` (8-byte hashes in event-time buckets) plus
two facts that make a replay recognisable without storing every id's origin:

* ``hw``: the highest offset already decided. A record at or below it is the same record
  again (a restart or a rebalance replays the uncommitted tail), not a new sighting;
* ``dups``: the offsets, within the horizon, that were judged duplicates. A replayed
  duplicate is a duplicate again; any other replayed record is re-published (downstream
  stages drop what they already applied by its raw origin).

Ids are forgotten a whole bucket at a time once their event time is ``horizon_s`` behind the
newest event time seen: the horizon only has to cover producer retries and the allowed
lateness; the warehouse's ``ReplacingMergeTree`` tables already make a later copy harmless.

Changes are written as one ``Delta`` per step (not one changelog record per event): the new
hashes by bucket, the duplicate offsets and the offset range, under a key of its own. A
restart rebuilds the partition from its deltas (``load``); deltas wholly behind the horizon
are deleted (``expired``), except the newest, which carries ``hw``.

A busy partition takes many small steps (about 84 ids each at 20,000 events/s), and reading
a record back costs far more than its ids: an hour of one record per step took 66 s to
restore. So a step's record is the union of the steps so far of its group (up to
``ROLLUP_STEPS`` steps, or ``ROLLUP_MAX_IDS`` ids), written under the group's key: the
broker's compaction keeps one record per group, with no tombstone to read, and a stop at
any point leaves the group's record whole.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from cityops.streams.seen_ids import SeenIds, id_hash


class Verdict(Enum):
    NEW = "new"  # first sighting: publish
    DUPLICATE = "duplicate"  # seen before (or a replay of a record judged so): dead-letter
    REPLAYED = "replayed"  # the same record again after a restart: publish again


@dataclass
class Delta:
    """What one step changed in one partition (a changelog value, JSON-encodable)."""

    lo: int
    hi: int
    # bucket → hashes: a list while a step builds it, an array once read back
    ids: dict[int, Any] = field(default_factory=dict)
    dups: list[int] = field(default_factory=list)
    newest: float = 0.0  # the partition's newest event time after this step
    #: a group's hashes per bucket already as little-endian bytes, grown step by step
    #: (``PartitionDedup.take_delta``): each step's record holds the whole group, and
    #: converting every Python int of it again at each step made that O(steps²)
    packed: dict[int, bytearray] = field(default_factory=dict, repr=False, compare=False)

    def key(self, partition: int) -> str:
        return f"{partition}/{self.lo}"

    def add_step(self, ids: dict[int, list[int]]) -> None:
        """Join a step's new hashes (bucket → hashes) to this group."""
        for bucket, hashes in ids.items():
            self.ids.setdefault(bucket, []).extend(hashes)
            self.packed.setdefault(bucket, bytearray()).extend(
                np.asarray(hashes, dtype="<u8").tobytes())

    def _bytes(self, bucket: int, hashes: Any) -> bytes | bytearray:
        packed = self.packed.get(bucket)
        if packed is not None and len(packed) == 8 * len(hashes):
            return packed
        return np.asarray(hashes, dtype="<u8").tobytes()

    def to_state(self) -> dict[str, Any]:
        return {"lo": self.lo, "hi": self.hi, "t": self.newest, "dups": self.dups,
                "b": {str(b): base64.b64encode(self._bytes(b, hs)).decode()
                      for b, hs in self.ids.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Delta:
        # read back as arrays: a restore packs them per bucket without a Python int per id
        ids: dict[int, Any] = {
            int(b): np.frombuffer(base64.b64decode(v), dtype="<u8")
            for b, v in (state.get("b") or {}).items()}
        return cls(lo=int(state["lo"]), hi=int(state["hi"]), ids=ids,
                   dups=[int(o) for o in state.get("dups") or []],
                   newest=float(state.get("t") or 0.0))


#: steps whose changes share one record (a group; see the module's docstring), and the most
#: ids a group's record holds (about 11 bytes each in JSON: well within a Kafka message)
ROLLUP_STEPS = 16
ROLLUP_MAX_IDS = 50_000


class PartitionDedup:
    """The dedup state of one raw partition."""

    def __init__(self, horizon_s: float, bucket_s: float = 60.0,
                 rollup_steps: int = ROLLUP_STEPS) -> None:
        if horizon_s <= 0:
            raise ValueError("horizon_s must be > 0")
        self.horizon_s = horizon_s
        self.seen = SeenIds(bucket_s)
        self.hw = -1
        self.dups: set[int] = set()
        self.newest: float | None = None
        self.deltas: dict[str, tuple[float, int, list[int]]] = {}  # key → (newest, hi, dups)
        self._oldest_stamp = math.inf  # no delta expires before the cutoff passes this
        self._newest_key: str | None = None  # the delta with the highest ``hi`` (kept)
        self._open: Delta | None = None
        self.rollup_steps = rollup_steps
        self._group: Delta | None = None  # the open group: its steps' changes together
        self._group_steps = 0

    # --- deciding ------------------------------------------------------------------------
    def judge(self, offset: int, event_id: str, event_time: float) -> Verdict:
        """Decide one record; the decision joins the open delta (``take_delta``)."""
        if offset <= self.hw:
            return Verdict.DUPLICATE if offset in self.dups else Verdict.REPLAYED
        delta = self._delta(offset)
        delta.hi = self.hw = offset
        h = id_hash(event_id)
        seen = self.seen
        b = seen.bucket(event_time)  # once: it was worked out three times per record
        if seen.holds(h, b):
            self.dups.add(offset)
            delta.dups.append(offset)
            return Verdict.DUPLICATE
        if self.newest is None or event_time > self.newest:
            self.newest = event_time
        if event_time >= self.newest - self.horizon_s:
            # older than the horizon: its first copy (if any) was forgotten; not remembered
            seen.put(h, b)
            delta.ids.setdefault(b, []).append(h)
        return Verdict.NEW

    def skip(self, offset: int) -> None:
        """A record that never reached dedup (dead-lettered): still decided, for ``hw``."""
        if offset > self.hw:
            self._delta(offset).hi = self.hw = offset

    def _delta(self, offset: int) -> Delta:
        if self._open is None:
            self._open = Delta(lo=offset, hi=offset)
        return self._open

    def take_delta(self) -> Delta | None:
        """This step's changes joined to its group's: the record to write (under its
        ``key``, replacing the group's previous one); None if nothing was decided."""
        step, self._open = self._open, None
        if step is None:
            return None
        group = self._group
        if group is None:
            group = self._group = Delta(lo=step.lo, hi=step.hi)
            self._group_steps = 0
        group.hi = max(group.hi, step.hi)
        group.dups.extend(step.dups)
        group.add_step(step.ids)
        group.newest = self.newest or 0.0
        self._group_steps += 1
        self._remember(group)
        if (self._group_steps >= self.rollup_steps
                or sum(len(h) for h in group.ids.values()) >= ROLLUP_MAX_IDS):
            self._group = None  # the next step opens a new group (a new key)
        return group

    def _remember(self, delta: Delta) -> None:
        stamp = max([delta.newest, *[max(0.0, (b + 1) * self.seen.bucket_s)
                                     for b in delta.ids]])
        key = f"{delta.lo}"
        self.deltas[key] = (stamp, delta.hi, delta.dups)
        self._oldest_stamp = min(self._oldest_stamp, stamp)
        if self._newest_key is None or delta.hi >= self.deltas[self._newest_key][1]:
            self._newest_key = key

    # --- forgetting ----------------------------------------------------------------------
    def expired(self) -> list[int]:
        """Forget the buckets behind the horizon; returns the ``lo`` of every delta now wholly
        behind it (to delete from the changelog). The newest delta stays: it holds ``hw``."""
        if self.newest is None:
            return []
        cutoff = self.newest - self.horizon_s
        self.seen.forget_before(cutoff)
        self.seen.freeze_before(self.newest - 2 * self.seen.bucket_s)
        if self._oldest_stamp >= cutoff:  # the usual step: nothing to scan
            return []
        gone = [k for k, (stamp, _hi, _d) in self.deltas.items()
                if stamp < cutoff and k != self._newest_key]
        for k in gone:
            _stamp, _hi, dups = self.deltas.pop(k)
            self.dups.difference_update(dups)
        self._oldest_stamp = min((v[0] for v in self.deltas.values()), default=math.inf)
        return [int(k) for k in gone]

    # --- restoring -----------------------------------------------------------------------
    def restore(self, deltas: list[Delta]) -> None:
        """Rebuild from the deltas read back from the changelog (any order): each bucket's
        hashes are packed once, not merged delta by delta."""
        by_bucket: dict[int, list[np.ndarray]] = {}
        for delta in deltas:
            for bucket, hashes in delta.ids.items():
                by_bucket.setdefault(bucket, []).append(np.asarray(hashes, dtype="<u8"))
            self.dups.update(delta.dups)
            self.hw = max(self.hw, delta.hi)
            if delta.newest and (self.newest is None or delta.newest > self.newest):
                self.newest = delta.newest
            self._remember(delta)
        for bucket, parts in by_bucket.items():
            self.seen.load(bucket, np.concatenate(parts))

    def __len__(self) -> int:
        return len(self.seen)
