"""Event-time windows with a per-key watermark and allowed lateness; state is JSON-able.

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

**Per-source watermarks** (when the caller passes ``source`` and a processing clock ``now_s``
to ``add``): a key's event time is then the *minimum* over its active sources' newest event
times, not the newest of any. A zone's counters arrive through different raw partitions,
and a consumer catching up reads those at different speeds: with the newest-of-any rule the
fast partition's counters made the slow one's on-time reports late. A source stops holding
its key back once it is silent on the *processing* clock for ``idle_intervals`` of its own
reporting intervals (at least ``min_idle_s``), the way Flink's ``withIdleness`` or Kafka
Streams' ``max.task.idle.ms`` judge idle inputs: a backlog read at any speed never makes a
source idle while it still delivers, and a dead sensor stops holding its zone after a few
of its intervals. Sources the caller ``expect``s (the registry's counters of a zone) hold the
key back from its first event until they are heard or idle, so a partition not read yet
cannot be overtaken. The watermark never moves back: a source that comes back after being
idle finds the key where the others took it, and its older events are late. An event behind
its *own* source's newest event time − lateness − span is late too, whatever the other
sources do: a source is read in order from one partition, so only a truly late re-send
falls that far behind itself.
"""

from __future__ import annotations

import math
from bisect import insort
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

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
        # bounds are floats however the size was given: compiled (``cityops.compiled``) a
        # float field holds 60.0 for 60, and the bounds in the state logs must read alike
        start = float(math.floor(ts / self.size_s) * self.size_s)
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
        last = float(math.floor(ts / self.step_s) * self.step_s)  # as ``TumblingWindow``
        out: list[Window] = []
        start = last
        while start + self.size_s > ts:
            out.append((start, start + self.size_s))
            start -= self.step_s
        out.reverse()  # built latest first: earliest first now, as sorted
        return out


Assigner = TumblingWindow | HoppingWindow


class Result:
    """A result made per event (a few per counter report): fields set by a plain ``__init__``,
    compared and shown by value as a dataclass is.

    Not a dataclass: compiled (``cityops.compiled``), a dataclass keeps the ``__init__`` the
    dataclasses module writes, interpreted Python called with a tuple and a dict of
    arguments; a written one is a native call. The window and aggregator results made that
    way were 10 % of the footfall fold. Not generic either: a generic class does not load
    once compiled (mypyc issue 827), so an accumulator is ``Any`` here and typed by the
    aggregator that folds it.
    """

    FIELDS: ClassVar[tuple[str, ...]] = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self.FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        shown = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.FIELDS)
        return f"{type(self).__name__}({shown})"


class WindowSnapshot(Result):
    """One window's aggregate as it should be published."""

    FIELDS = ("key", "start_s", "end_s", "acc", "revision", "emitted")

    def __init__(self, key: Any, start_s: float, end_s: float, acc: Any, revision: int,
                 emitted: bool) -> None:
        self.key = key
        self.start_s = start_s
        self.end_s = end_s
        self.acc = acc
        self.revision = revision
        self.emitted = emitted  # False only in close results: closed without ever firing


class AddResult(Result):
    """Outcome of one event: accepted (with windows to publish) or late."""

    FIELDS = ("accepted", "watermark_s", "updated", "emit", "lateness_s")

    def __init__(self, accepted: bool, watermark_s: float | None,
                 updated: list[Window] | None = None, emit: list[WindowSnapshot] | None = None,
                 lateness_s: float = 0.0) -> None:
        self.accepted = accepted
        self.watermark_s = watermark_s
        self.updated: list[Window] = [] if updated is None else updated  # windows it landed in
        self.emit: list[WindowSnapshot] = [] if emit is None else emit  # publish these now
        self.lateness_s = lateness_s  # how far behind the watermark a late event was

    @property
    def late(self) -> bool:
        return not self.accepted


class _Win:
    """One open window of a key: its bounds, accumulator, revision and whether it fired.

    A class, not a dict: compiled (``cityops.compiled``) its fields are read and written in
    place, where a dict's are hashed and looked up by name on every use. Its snapshot is
    made once and kept until the window changes (``add`` then drops it): a step snapshots
    every open window of a zone it touched, and a zone held back while catching up has
    hours of them open, nearly all unchanged, which the state chain's diff then passes by
    identity.
    """

    def __init__(self, start: float, end: float, acc: Any, revision: int,
                 fired: bool) -> None:
        self.start = start
        self.end = end
        self.acc = acc
        self.revision = revision
        self.fired = fired
        self.state: dict[str, Any] | None = None  # the snapshot; None once changed

    def to_state(self, dump: Callable[[Any], Any] | None) -> dict[str, Any]:
        state = self.state
        if state is None:
            state = self.state = {"start": self.start, "end": self.end,
                                  "acc": self.acc if dump is None else dump(self.acc),
                                  "revision": self.revision, "fired": self.fired}
        return state


class _Clock:
    """One source of a key: its newest event time, when it was last heard (processing time;
    None once restored, until its first use here), its reporting interval and how long it
    may stay silent before it stops holding the key back."""

    def __init__(self, newest: float, heard_at: float | None, cadence_s: float,
                 idle_after_s: float) -> None:
        self.newest = newest
        self.heard_at = heard_at
        self.cadence_s = cadence_s
        self.idle_after_s = idle_after_s


class _KeyState:
    """Everything a key holds; ``to_state`` / ``from_state`` give its JSON-able snapshot."""

    def __init__(self) -> None:
        self.max_ts: float | None = None  # newest event time of any source
        self.closed_until: float | None = None  # closed from outside (timer, shutdown)
        self.closed_end: float | None = None  # the latest end of a closed window
        self.windows: dict[str, _Win] = {}
        self.late = 0
        self.span = 0.0  # the slowest source's reporting interval
        self.src: dict[str, _Clock] = {}  # per-source clocks (per-source watermarks)
        self.wm: float | None = None  # the per-source watermark; never moves back
        self.born: float | None = None  # processing time of the key's first event here
        self.heard: float | None = None  # processing time of the key's last event
        self.adv: float | None = None  # processing time of the last advance, clocks unchanged
        self.heard_all = False  # every expected source heard (sources are never dropped)
        # open windows by end, all and not yet fired: ``(end, window key)`` lists kept sorted
        # beside the state (not in its snapshot; rebuilt on first use after a restore). An
        # aggregator's windows all have one size, so end order is start order.
        self.ends: list[tuple[float, str]] | None = None
        self.unfired: list[tuple[float, str]] = []

    def order(self) -> tuple[list[tuple[float, str]], list[tuple[float, str]]]:
        ends = self.ends
        if ends is None:
            ends = self.ends = sorted((w.end, wk) for wk, w in self.windows.items())
            self.unfired = [(e, wk) for e, wk in ends if not self.windows[wk].fired]
        return ends, self.unfired


class WindowedAggregator(Generic[K, A, V]):
    """Folds values into event-time windows per key.

    ``zero``/``fold`` make accumulators; ``fold`` returns a new one and never changes its
    argument (published snapshots hold the old). An accumulator is JSON-able, or ``dump``
    makes it so for ``to_state`` and ``load`` reads that back in ``from_state``.
    """

    def __init__(self, assigner: Assigner, allowed_lateness_s: float,
                 zero: Callable[[], A], fold: Callable[[A, V, float], A],
                 dump: Callable[[A], Any] | None = None,
                 load: Callable[[Any], A] | None = None) -> None:
        if allowed_lateness_s < 0:
            raise ValueError("allowed_lateness_s must be ≥ 0")
        self.assigner = assigner
        self.allowed_lateness_s = allowed_lateness_s
        self._zero = zero
        self._fold = fold
        self._dump = dump
        self._load = load
        self._state: dict[K, _KeyState] = {}
        # feed clock (newest event time over all keys, this process) and, per key, its value
        # at the first event of another key after the key's last one (so a fast key's jump
        # is not counted as quiet time): how long a key has been quiet, on the feed's clock
        self._feed_ts: float | None = None
        self._seen_at: dict[K, float] = {}
        self._pending: set[K] = set()  # keys whose last event no other key followed yet
        # per-source watermarks (see the module docstring)
        self.idle_intervals = 4.0
        self.min_idle_s = 0.0
        self._expected: dict[K, dict[str, float]] = {}  # key → {source: cadence_s}
        #: a piece's time → its windows, (start, end, window key, (start, end))
        self._spans_of: dict[float, list[tuple[float, float, str, Window]]] = {}

    def configure_sources(self, idle_intervals: float, min_idle_s: float) -> None:
        """How long (processing time) a silent source keeps holding its key's watermark."""
        if idle_intervals <= 0 or min_idle_s < 0:
            raise ValueError("need idle_intervals > 0 and min_idle_s ≥ 0")
        self.idle_intervals = idle_intervals
        self.min_idle_s = min_idle_s
        for st in self._state.values():
            for clock in st.src.values():
                clock.idle_after_s = self.idle_after_s(clock.cadence_s)

    def expect(self, key: K, sources: dict[str, float]) -> None:
        """Sources (→ reporting interval, s) the key waits for before its first sight of them."""
        self._expected[key] = dict(sources)
        st = self._state.get(key)
        if st is not None:
            st.heard_all = False

    def idle_after_s(self, cadence_s: float) -> float:
        """Processing time after which a silent source of this cadence is idle."""
        return max(self.idle_intervals * cadence_s, self.min_idle_s)

    # --- state -------------------------------------------------------------------------
    def _key_state(self, key: K) -> _KeyState:
        st = self._state.get(key)
        if st is None:
            st = self._state[key] = _KeyState()
        return st

    def note_span(self, key: K, span_s: float) -> None:
        """Widen the key's lateness to ``span_s`` (its slowest source's interval); never narrows."""
        st = self._key_state(key)
        if span_s > st.span:
            st.span = float(span_s)
            st.adv = None

    def to_state(self, key: K) -> dict[str, Any]:
        """JSON-able snapshot of one key (for a changelog table)."""
        st = self._state.get(key)
        if st is None:
            return {"max_ts": None, "closed_until": None, "windows": {}, "late": 0,
                    "span": 0.0}
        out: dict[str, Any] = {
            "max_ts": st.max_ts, "closed_until": st.closed_until, "late": st.late,
            "span": st.span, "closed_end": st.closed_end,
            "windows": {k: w.to_state(self._dump) for k, w in st.windows.items()}}
        if st.src:  # per-source clocks: event times only (processing times are local)
            out["src"] = {s: [v.newest, v.cadence_s] for s, v in st.src.items()}
            out["wm"] = st.wm
        return out

    def from_state(self, key: K, state: dict[str, Any]) -> None:
        """Restore one key from ``to_state`` output (e.g. after a rebalance)."""
        st = self._state[key] = _KeyState()
        st.max_ts = _opt_float(state.get("max_ts"))
        st.closed_until = _opt_float(state.get("closed_until"))
        st.late = int(state.get("late", 0))
        st.span = float(state.get("span", 0.0))
        st.closed_end = _opt_float(state.get("closed_end"))
        load = self._load
        st.windows = {k: _Win(float(w["start"]), float(w["end"]),
                              w["acc"] if load is None else load(w["acc"]),
                              int(w["revision"]), bool(w["fired"]))
                      for k, w in state.get("windows", {}).items()}
        # a restored source is heard "now" (at its first use): processing time of another
        # process says nothing about this one's, and the rebalance itself took time
        st.src = {src: _Clock(float(v[0]), None, float(v[1]), self.idle_after_s(float(v[1])))
                  for src, v in (state.get("src") or {}).items()}
        st.wm = _opt_float(state.get("wm"))

    def forget(self, key: K) -> None:
        """Drop the key's state (its partition was revoked; a restore rebuilds it)."""
        self._state.pop(key, None)
        self._seen_at.pop(key, None)
        self._pending.discard(key)

    def keys(self) -> Iterator[K]:
        return iter(list(self._state))

    def watermark(self, key: K) -> float | None:
        """max(max event time − allowed lateness − span, externally closed point) for the key."""
        st = self._state.get(key)
        return None if st is None else self._mark(st)

    def _mark(self, st: _KeyState) -> float | None:
        """``watermark`` of a key's state (the hot path has it at hand)."""
        mark: float | None
        if st.src:
            mark = st.wm  # per-source: advanced by ``_advance``, never moves back
        else:
            max_ts = st.max_ts
            mark = None if max_ts is None else max_ts - self.allowed_lateness_s - st.span
        closed = st.closed_until
        if closed is not None and (mark is None or closed > mark):
            mark = closed
        closed = st.closed_end
        if closed is not None and (mark is None or closed > mark):
            mark = closed
        return mark

    def _hear(self, st: _KeyState, source: str, ts: float, now_s: float,
              cadence_s: float) -> None:
        """Note that ``source`` delivered an event of time ``ts`` at processing time ``now_s``."""
        if st.born is None:
            st.born = now_s
        clock = st.src.get(source)
        if clock is None:
            st.src[source] = _Clock(ts, now_s, float(cadence_s), self.idle_after_s(cadence_s))
        else:
            if ts > clock.newest:
                clock.newest = ts
            clock.heard_at = now_s
            if cadence_s > clock.cadence_s:
                clock.cadence_s = float(cadence_s)
                clock.idle_after_s = self.idle_after_s(cadence_s)
        st.heard = now_s
        st.adv = None  # the clocks changed: the next ``advance`` looks again

    def low_water_s(self, key: K, now_s: float) -> float | None:
        """Minimum newest event time over the key's active sources; None while it must wait.

        A source is active while silent for less than ``idle_after_s`` of its cadence on the
        processing clock; an expected source never heard holds the key back for as long
        from the key's first event (in this process).
        """
        st = self._state.get(key)
        return None if st is None else self._low_water(key, st, now_s)

    def _low_water(self, key: K, st: _KeyState, now_s: float) -> float | None:
        if not st.src:
            return None
        born = st.born
        if born is None:
            born = st.born = now_s
        low: float | None = None
        for clock in st.src.values():
            heard_at = clock.heard_at
            if heard_at is None:  # restored: counts from its first use here
                heard_at = clock.heard_at = now_s
            if now_s - heard_at <= clock.idle_after_s and (low is None or clock.newest < low):
                low = clock.newest
        expected = self._expected.get(key)
        if expected and not st.heard_all:
            if expected.keys() <= st.src.keys():  # sources are never dropped: for good
                st.heard_all = True
                return low
            for source, cadence in expected.items():
                if source not in st.src and now_s - born <= self.idle_after_s(cadence):
                    return None  # a registered source not heard yet: its partition may lag
        return low

    def source_mark(self, key: K, source: str) -> float | None:
        """The source's own newest event time − lateness − span: its reports behind that are
        late even while another source holds the key back (a source is read in order from
        one partition, so only a truly late re-send can fall that far behind itself)."""
        st = self._state.get(key)
        return None if st is None else self._source_mark(st, source)

    def _source_mark(self, st: _KeyState, source: str) -> float | None:
        clock = st.src.get(source)
        if clock is None:
            return None
        return clock.newest - self.allowed_lateness_s - st.span

    def advance(self, key: K, now_s: float) -> float | None:
        """Move the key's per-source watermark on (sources gone idle count no more)."""
        st = self._key_state(key)
        self._advance_state(key, st, now_s)
        return self._mark(st)

    def _advance_state(self, key: K, st: _KeyState, now_s: float) -> None:
        if not st.src:
            if st.wm is None and st.max_ts is not None:
                # a key restored from a newest-of-any snapshot keeps its watermark
                st.wm = st.max_ts - self.allowed_lateness_s - st.span
            return
        self._advance(key, st, now_s)

    def _advance(self, key: K, st: _KeyState, now_s: float) -> None:
        st.adv = now_s  # clocks unchanged since: advancing again at now_s changes nothing
        low = self._low_water(key, st, now_s)
        if low is None:
            return
        mark = low - self.allowed_lateness_s - st.span
        if st.wm is None or mark > st.wm:
            st.wm = mark

    def late_count(self, key: K) -> int:
        st = self._state.get(key)
        return 0 if st is None else st.late

    # --- processing ----------------------------------------------------------------------
    @staticmethod
    def _wkey(start: float) -> str:
        return repr(float(start))

    def _snap(self, key: K, w: _Win, emitted: bool) -> WindowSnapshot:
        return WindowSnapshot(key=key, start_s=w.start, end_s=w.end, acc=w.acc,
                              revision=w.revision, emitted=emitted)

    def add(self, key: K, ts: float, value: V,
            pieces: list[tuple[float, V]] | None = None, *, source: str | None = None,
            now_s: float | None = None, cadence_s: float = 0.0,
            start_s: float | None = None) -> AddResult:
        """Fold one event; returns what to publish, or ``accepted=False`` when it is late.

        ``pieces`` (``(piece_ts, value)``, earliest first) spread an event that covers a span
        over the windows of each piece; without them ``value`` goes to the windows of ``ts``.
        The event is late when its start (``start_s``; by default its earliest piece) is
        behind the watermark. A span's pieces are bucket starts (minutes), so its first
        piece may lie before the span starts: the windows of that bucket end after the start,
        hence after the watermark, and are still open. With ``source`` and ``now_s``
        (processing time, s) the key's watermark is the per-source one.
        """
        st = self._key_state(key)
        if source is not None and now_s is not None:
            if st.adv != now_s:
                self._advance_state(key, st, now_s)
            return self._add(key, st, ts, value, pieces, source, now_s, cadence_s, start_s)
        return self._add(key, st, ts, value, pieces, None, 0.0, cadence_s, start_s)

    def _add(self, key: K, st: _KeyState, ts: float, value: V,
             pieces: list[tuple[float, V]] | None, source: str | None, now_s: float,
             cadence_s: float, start_s: float | None) -> AddResult:
        """``add`` with the processing time unboxed (meaningful when ``source`` is given)."""
        wm = self._mark(st)
        if source is not None:
            own = self._source_mark(st, source)
            if own is not None and (wm is None or own > wm):
                wm = own
        parts = pieces if pieces else [(ts, value)]
        first = start_s if start_s is not None else min(p for p, _ in parts)
        if wm is not None and first < wm:
            st.late += 1
            if source is not None:  # a late event still shows its source is alive
                self._hear(st, source, ts, now_s, cadence_s)
            return AddResult(accepted=False, watermark_s=wm, lateness_s=wm - first)
        windows = st.windows
        updated: list[Window] = []
        emit: list[WindowSnapshot] = []
        prev_max = st.max_ts
        new_max = ts if prev_max is None or ts > prev_max else prev_max
        st.max_ts = new_max
        feed_ts = self._feed_ts
        feed_ts = self._feed_ts = ts if feed_ts is None or ts > feed_ts else feed_ts
        pending = self._pending
        if len(pending) != 1 or key not in pending:  # another key's turn: no set per event
            for other in pending:
                if other != key:
                    self._seen_at[other] = feed_ts
            self._pending = {key}
        if source is not None:
            self._hear(st, source, ts, now_s, cadence_s)
            self._advance(key, st, now_s)
        refired: dict[str, _Win] = {}
        ends, unfired = st.order()  # before any new window joins the dict
        spans_of, fold = self._spans_of, self._fold
        single = len(parts) == 1
        for piece_ts, piece in parts:
            spans = spans_of.get(piece_ts)
            if spans is None:  # pieces are minutes: the same few recur for every key
                if len(spans_of) > 10_000:
                    spans_of.clear()
                spans = spans_of[piece_ts] = [(start, end, self._wkey(start), (start, end))
                                              for start, end
                                              in self.assigner.windows_for(piece_ts)]
            for start, end, wk, window in spans:
                w = windows.get(wk)
                if w is None:
                    w = windows[wk] = _Win(start, end, self._zero(), 0, False)
                    insort(ends, (end, wk))
                    insort(unfired, (end, wk))
                w.acc = fold(w.acc, piece, ts)
                w.state = None
                if single or window not in updated:  # one piece's windows are distinct
                    updated.append(window)
                if w.fired:  # an allowed-late event changed an already published window
                    refired[wk] = w
        if refired:
            for w in sorted(refired.values(), key=_start_of):
                w.revision += 1  # folded above: its snapshot was dropped there
                emit.append(self._snap(key, w, True))
        # windows whose end the key's event time has now passed are complete: fire them
        # (earliest first; an index, not a sort of every open window per event: a zone
        # held back while catching up keeps hours of windows open)
        while unfired and unfired[0][0] <= new_max:
            w = windows[unfired.pop(0)[1]]
            w.fired = True
            w.state = None
            emit.append(self._snap(key, w, True))
        wm = self._mark(st)
        self._close(key, st, wm)  # closing moves nothing past ``wm``: it stays the watermark
        return AddResult(accepted=True, watermark_s=wm, updated=updated, emit=emit)

    def _close(self, key: K, st: _KeyState, wm: float | None
               ) -> list[WindowSnapshot]:
        """Close the key's windows ending at or before ``wm`` (its watermark)."""
        closed: list[WindowSnapshot] = []
        if wm is None:
            return closed
        ends, unfired = st.order()
        while ends and ends[0][0] <= wm:
            w = st.windows.pop(ends.pop(0)[1])
            closed.append(self._snap(key, w, w.fired))
            # a widened span never reopens a closed window: it would replace the
            # published one with only the newcomer's counts
            if st.closed_end is None or w.end > st.closed_end:
                st.closed_end = w.end
        while unfired and unfired[0][0] <= wm:  # closed before they fired (idle keys)
            unfired.pop(0)
        return closed

    def close_until(self, key: K, watermark_s: float) -> list[WindowSnapshot]:
        """Close the key's windows ending at or before ``watermark_s`` (idle keys, shutdown).

        Snapshots with ``emitted=False`` were never fired: publish them now (revision 0).
        Events older than ``watermark_s`` are late from now on.
        """
        st = self._key_state(key)
        if st.closed_until is None or watermark_s > st.closed_until:
            st.closed_until = watermark_s
        return self._close(key, st, self._mark(st))

    def close_all_until(self, watermark_s: float) -> list[WindowSnapshot]:
        """``close_until`` for every key: the wall-clock timer's entry point."""
        out: list[WindowSnapshot] = []
        for key in self.keys():
            out.extend(self.close_until(key, watermark_s))
        return out

    def close_idle(self, idle_after_s: float, now_s: float | None = None
                   ) -> dict[K, list[WindowSnapshot]]:
        """Close windows of keys that are actually idle; returns closed snapshots per key.

        A key is idle when the feed's event time (newest over all keys) has advanced more
        than ``idle_after_s`` since the first event of another key after the key's own last
        event (so the jump to a fast key's clock is not quiet time). Its windows are closed
        up to its own clock moved on by that quiet time (``max_ts + quiet − idle_after_s``),
        so keys whose clocks run behind or ahead of others never make each other late.
        Keys restored from a snapshot start counting their quiet time at the first call.
        With ``now_s`` (processing time) a key must also have been silent that long on the
        processing clock: while a backlog is read, the feed clock races ahead of a key whose
        partition is read more slowly (or is being reassigned after a crash), and closing it
        then would make its on-time events late.
        """
        out: dict[K, list[WindowSnapshot]] = {}
        if self._feed_ts is None:
            return out
        for key, st in list(self._state.items()):
            if st.max_ts is None or key in self._pending:
                continue
            if now_s is not None:
                if st.heard is None:
                    st.heard = now_s  # restored: counts from its first use here
                if now_s - st.heard <= idle_after_s:
                    continue
            seen = self._seen_at.setdefault(key, self._feed_ts)
            quiet = self._feed_ts - seen
            idle_s = idle_after_s + st.span  # an hourly source is quiet for an hour
            if quiet <= idle_s:
                continue
            closed = self.close_until(key, st.max_ts + quiet - idle_s)
            if closed:
                out[key] = closed
        return out

    def open_windows(self, key: K) -> list[WindowSnapshot]:
        st = self._state.get(key)
        if st is None:
            return []
        return [self._snap(key, w, w.fired) for w in sorted(st.windows.values(), key=_start_of)]


def _start_of(w: _Win) -> float:
    return w.start


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
