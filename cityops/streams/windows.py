"""Event-time windows with a per-key watermark and allowed lateness; state is a plain dict.

Times are POSIX seconds (``datetime.timestamp()``); windows are aligned to the epoch, which
for sizes dividing one hour is also aligned to local wall-clock minutes (and to hours in zones
whose offset is a whole number of hours).

An event may cover a span of time (a footfall report covers ``[end − interval_s, end)``): the
caller passes its *pieces* (``(piece_ts, value)``, e.g. its per-minute parts) and each piece
is folded into the windows containing it. The key's *span* (its slowest source's reporting
interval, ``note_span``) widens its lateness: a report can only be sent once its interval has
ended, so an hourly counter's windows wait an hour plus the allowed lateness, and an in-order
feed of hourly, 15-minute or 30-second reports is never late.

Emission model (what the Faust agent publishes):

* a window is **fired** (revision 0) when the key's event time passes its end;
* an event that arrives after that but within the allowed lateness updates the window, which
  is **re-emitted with revision + 1** (the warehouse keeps the highest revision);
* a window is **closed** (dropped from state, final) once the watermark passes its end;
* an event older than the watermark is **late**: nothing is updated, the caller routes it to
  the late topic with ``AddResult.lateness_s``.

The watermark is **per key** (max event time seen for that key − allowed lateness − the
key's span). Keys are
sensors / zones whose events share one Kafka partition in order, while different sensors'
clocks and uplinks differ: with one global watermark a single fast or clock-skewed sensor
would make every other sensor's events late. Per-key watermarks also live in the key's own
state, so they move with the key through a changelog table on rebalance. An idle key would
never close its windows on its own, so the caller closes them with ``close_until(key, wm)``
/ ``close_all_until(wm)`` driven by a wall-clock timer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

K = TypeVar("K")
A = TypeVar("A")
V = TypeVar("V")

Window = tuple[float, float]


@dataclass(frozen=True)
class TumblingWindow:
    """Back-to-back windows of ``size_s``: each event falls in exactly one."""

    size_s: float

    def __post_init__(self) -> None:
        if self.size_s <= 0:
            raise ValueError("size_s must be > 0")

    def windows_for(self, ts: float) -> list[Window]:
        start = math.floor(ts / self.size_s) * self.size_s
        return [(start, start + self.size_s)]


@dataclass(frozen=True)
class HoppingWindow:
    """Windows of ``size_s`` starting every ``step_s``: an event falls in size/step of them."""

    size_s: float
    step_s: float

    def __post_init__(self) -> None:
        if self.size_s <= 0 or self.step_s <= 0 or self.step_s > self.size_s:
            raise ValueError("need 0 < step_s ≤ size_s")

    def windows_for(self, ts: float) -> list[Window]:
        last = math.floor(ts / self.step_s) * self.step_s
        out: list[Window] = []
        start = last
        while start + self.size_s > ts:
            out.append((start, start + self.size_s))
            start -= self.step_s
        return sorted(out)


Assigner = TumblingWindow | HoppingWindow


@dataclass(frozen=True)
class WindowSnapshot(Generic[A]):
    """One window's aggregate as it should be published."""

    key: Any
    start_s: float
    end_s: float
    acc: A
    revision: int
    emitted: bool  # False only in close results: a window closed without ever being fired


@dataclass(frozen=True)
class AddResult(Generic[A]):
    """Outcome of one event: accepted (with windows to publish) or late."""

    accepted: bool
    watermark_s: float | None
    updated: list[Window] = field(default_factory=list)  # windows the event landed in
    emit: list[WindowSnapshot[A]] = field(default_factory=list)  # publish these now
    lateness_s: float = 0.0  # how far behind the watermark a late event was

    @property
    def late(self) -> bool:
        return not self.accepted


class WindowedAggregator(Generic[K, A, V]):
    """Folds values into event-time windows per key; ``zero``/``fold`` must keep A JSON-able."""

    def __init__(self, assigner: Assigner, allowed_lateness_s: float,
                 zero: Callable[[], A], fold: Callable[[A, V, float], A]) -> None:
        if allowed_lateness_s < 0:
            raise ValueError("allowed_lateness_s must be ≥ 0")
        self.assigner = assigner
        self.allowed_lateness_s = allowed_lateness_s
        self._zero = zero
        self._fold = fold
        self._state: dict[K, dict[str, Any]] = {}
        # feed clock (newest event time over all keys, this process) and, per key, its value
        # at the first event of another key after the key's last one (so a fast key's jump
        # is not counted as quiet time): how long a key has been quiet, on the feed's clock
        self._feed_ts: float | None = None
        self._seen_at: dict[K, float] = {}
        self._pending: set[K] = set()  # keys whose last event no other key followed yet

    # --- state -------------------------------------------------------------------------
    def _key_state(self, key: K) -> dict[str, Any]:
        st = self._state.get(key)
        if st is None:
            st = {"max_ts": None, "closed_until": None, "windows": {}, "late": 0, "span": 0.0}
            self._state[key] = st
        return st

    def note_span(self, key: K, span_s: float) -> None:
        """Widen the key's lateness to ``span_s`` (its slowest source's interval); never narrows."""
        st = self._key_state(key)
        if span_s > st.get("span", 0.0):
            st["span"] = float(span_s)

    def to_state(self, key: K) -> dict[str, Any]:
        """JSON-able snapshot of one key (for a changelog table)."""
        st = self._state.get(key)
        if st is None:
            return {"max_ts": None, "closed_until": None, "windows": {}, "late": 0,
                    "span": 0.0}
        return {"max_ts": st["max_ts"], "closed_until": st["closed_until"], "late": st["late"],
                "span": st.get("span", 0.0), "closed_end": st.get("closed_end"),
                "windows": {k: dict(w) for k, w in st["windows"].items()}}

    def from_state(self, key: K, state: dict[str, Any]) -> None:
        """Restore one key from ``to_state`` output (e.g. after a rebalance)."""
        self._state[key] = {
            "max_ts": state.get("max_ts"), "closed_until": state.get("closed_until"),
            "late": int(state.get("late", 0)), "span": float(state.get("span", 0.0)),
            "closed_end": state.get("closed_end"),
            "windows": {k: dict(w) for k, w in state.get("windows", {}).items()},
        }

    def keys(self) -> Iterator[K]:
        return iter(list(self._state))

    def watermark(self, key: K) -> float | None:
        """max(max event time − allowed lateness − span, externally closed point) for the key."""
        st = self._state.get(key)
        if st is None:
            return None
        marks = [m for m in (
            None if st["max_ts"] is None
            else st["max_ts"] - self.allowed_lateness_s - st.get("span", 0.0),
            st["closed_until"], st.get("closed_end")) if m is not None]
        return max(marks) if marks else None

    def late_count(self, key: K) -> int:
        st = self._state.get(key)
        return 0 if st is None else int(st["late"])

    # --- processing ----------------------------------------------------------------------
    @staticmethod
    def _wkey(start: float) -> str:
        return repr(float(start))

    def _snap(self, key: K, w: dict[str, Any], emitted: bool) -> WindowSnapshot[A]:
        return WindowSnapshot(key=key, start_s=w["start"], end_s=w["end"], acc=w["acc"],
                              revision=w["revision"], emitted=emitted)

    def add(self, key: K, ts: float, value: V,
            pieces: list[tuple[float, V]] | None = None) -> AddResult[A]:
        """Fold one event; returns what to publish, or ``accepted=False`` when it is late.

        ``pieces`` (``(piece_ts, value)``, earliest first) spread an event that covers a span
        over the windows of each piece; without them ``value`` goes to the windows of ``ts``.
        The event is late when its earliest piece is behind the watermark.
        """
        st = self._key_state(key)
        wm = self.watermark(key)
        parts = pieces if pieces else [(ts, value)]
        first = min(p for p, _ in parts)
        if wm is not None and first < wm:
            st["late"] += 1
            return AddResult(accepted=False, watermark_s=wm, lateness_s=wm - first)
        windows = st["windows"]
        updated: list[Window] = []
        emit: list[WindowSnapshot[A]] = []
        prev_max = st["max_ts"]
        new_max = ts if prev_max is None else max(prev_max, ts)
        st["max_ts"] = new_max
        self._feed_ts = ts if self._feed_ts is None else max(self._feed_ts, ts)
        for other in self._pending - {key}:
            self._seen_at[other] = self._feed_ts
        self._pending = {key}
        refired: dict[str, dict[str, Any]] = {}
        for piece_ts, piece in parts:
            for start, end in self.assigner.windows_for(piece_ts):
                wk = self._wkey(start)
                w = windows.get(wk)
                if w is None:
                    w = {"start": start, "end": end, "acc": self._zero(), "revision": 0,
                         "fired": False}
                    windows[wk] = w
                w["acc"] = self._fold(w["acc"], piece, ts)
                if (start, end) not in updated:
                    updated.append((start, end))
                if w["fired"]:  # an allowed-late event changed an already published window
                    refired[wk] = w
        for w in sorted(refired.values(), key=lambda x: x["start"]):
            w["revision"] += 1
            emit.append(self._snap(key, w, True))
        # windows whose end the key's event time has now passed are complete: fire them
        for w in sorted(windows.values(), key=lambda x: x["start"]):
            if not w["fired"] and w["end"] <= new_max:
                w["fired"] = True
                emit.append(self._snap(key, w, True))
        self._close(key, st)
        return AddResult(accepted=True, watermark_s=self.watermark(key), updated=updated,
                         emit=emit)

    def _close(self, key: K, st: dict[str, Any]) -> list[WindowSnapshot[A]]:
        wm = self.watermark(key)
        closed: list[WindowSnapshot[A]] = []
        if wm is None:
            return closed
        for wk, w in sorted(st["windows"].items(), key=lambda kv: kv[1]["start"]):
            if w["end"] <= wm:
                closed.append(self._snap(key, w, w["fired"]))
                del st["windows"][wk]
                # a widened span never reopens a closed window: it would replace the
                # published one with only the newcomer's counts
                st["closed_end"] = max(st.get("closed_end") or w["end"], w["end"])
        return closed

    def close_until(self, key: K, watermark_s: float) -> list[WindowSnapshot[A]]:
        """Close the key's windows ending at or before ``watermark_s`` (idle keys, shutdown).

        Snapshots with ``emitted=False`` were never fired: publish them now (revision 0).
        Events older than ``watermark_s`` are late from now on.
        """
        st = self._key_state(key)
        if st["closed_until"] is None or watermark_s > st["closed_until"]:
            st["closed_until"] = watermark_s
        return self._close(key, st)

    def close_all_until(self, watermark_s: float) -> list[WindowSnapshot[A]]:
        """``close_until`` for every key: the wall-clock timer's entry point."""
        out: list[WindowSnapshot[A]] = []
        for key in self.keys():
            out.extend(self.close_until(key, watermark_s))
        return out

    def close_idle(self, idle_after_s: float) -> dict[K, list[WindowSnapshot[A]]]:
        """Close windows of keys that are actually idle; returns closed snapshots per key.

        A key is idle when the feed's event time (newest over all keys) has advanced more
        than ``idle_after_s`` since the first event of another key after the key's own last
        event (so the jump to a fast key's clock is not quiet time). Its windows are closed
        up to its own clock moved on by that quiet time (``max_ts + quiet − idle_after_s``),
        so keys whose clocks run behind or ahead of others never make each other late.
        Keys restored from a snapshot start counting their quiet time at the first call.
        """
        out: dict[K, list[WindowSnapshot[A]]] = {}
        if self._feed_ts is None:
            return out
        for key, st in list(self._state.items()):
            if st["max_ts"] is None or key in self._pending:
                continue
            seen = self._seen_at.setdefault(key, self._feed_ts)
            quiet = self._feed_ts - seen
            idle_s = idle_after_s + st.get("span", 0.0)  # an hourly source is quiet for an hour
            if quiet <= idle_s:
                continue
            closed = self.close_until(key, st["max_ts"] + quiet - idle_s)
            if closed:
                out[key] = closed
        return out

    def open_windows(self, key: K) -> list[WindowSnapshot[A]]:
        st = self._state.get(key)
        if st is None:
            return []
        return [self._snap(key, w, w["fired"])
                for w in sorted(st["windows"].values(), key=lambda x: x["start"])]
