"""Fetched batches go straight to the stages' steps, past Faust's per-message machinery.

Faust (faust-streaming 0.15.3) delivers each fetched message through the conductor, a
channel queue, the stream iterator with its sensors and ``take_events``' buffer, and acks
it through the stream again: tens of microseconds of Python per message before any of our
code runs, which profiled as the larger part of the worker. Faust still does everything
else here: group membership, assignment, fetching, offsets and commits, timers and the web
server (the stages' state is not in Faust tables: ``streams.state_log``); the agents stay
registered (so their topics are subscribed and acked), they just receive nothing.

``install()`` replaces ``Consumer._drain_messages`` with the same loop, plus:

* **one flow-control wait per fetched batch** instead of per message (``wait_first`` of the
  delivery and ``suspend_flow``: two tasks, an ``asyncio.wait`` and a cancellation each);
* **batches by topic**: a message of a topic with a registered handler (``register``) is
  collected; at ``CITYOPS_WORKER_BATCH_MAX`` the topic's records go to its handler as a
  step, and the fetch is read on while the step waits for the broker; at the end of the
  fetched batch the rest go, and the delivery waits for all its steps (``StepChain``: a
  topic's steps one after another, different topics' side by side). While a step runs, one
  ``InFlight`` stands for its records in Faust's unacknowledged set (``_unacked_messages``:
  a rebalance or a stop waits for it). A message is acknowledged only after its handler
  returned True (outputs and state delivered), a step's records at once (``ack_many``: Faust's
  bookkeeping, one lock); a failed step's handler has already stopped the worker for a
  replay (``alerting.stop_after_failed_step``);
* **no skipped records after a seek**: a fetched record beyond the next expected offset of a
  stage's topic (topics without holes: neither compacted nor transactional) is a batch
  fetched before Faust's seek to the committed offset. Faust records the skipped range as
  acknowledged (a "gap"), so the next commit would lose it: seen in the several-workers
  test, where a worker given a partition after a SIGKILL committed past 1,616 records no one
  had validated. Here the partition is sought back to the expected offset and the stale
  records dropped; only if the next fetch starts beyond it again (the records are gone, e.g.
  retention) is the gap recorded as Faust would;
* **a rebalance never cuts a step in half**: if ``suspend_flow`` cancels the delivery while
  steps run, they finish first (a step's outputs, state and replay marks must agree) and
  their records are acknowledged; records collected but not yet handed over, and steps
  started but still waiting for their topic's previous step or for flow control, are dropped
  (their records are fetched again from the committed offset). A topic's next step, in whichever
  delivery, waits for its previous one, so a partition is stepped in offset order.

* **a backlog read in write order**: the topics registered ``aligned`` (the raw feeds, whose
  partitions split a zone's counters) are read in record-time order (``streams.alignment``):
  a record more than ``CITYOPS_WORKER_ALIGN_MS`` past the oldest partition still behind is
  held here, neither taken nor acknowledged, its partition paused (Faust's own
  ``pause_partitions``), and handed over once the others caught up: in rounds after the
  fetch's own records, until a round frees none, so a step is not cut at one drift of
  record time; each fetch hands over at most ``CITYOPS_WORKER_POLL_RECORDS`` records. Held
  records of an older consumer generation (a rebalance, whose seeks fetch them again) or of
  a partition sought back are dropped, never handed over.

Messages of other topics go to Faust's own callback, as before.
``streams.durable.OffsetGapGuard`` still checks every record a step receives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiokafka.consumer.fetcher import FetchResult

from cityops.streams import metrics
from cityops.streams.alignment import LIVE_MS, PartitionAligner, PartitionView
from cityops.streams.batches import Delivered

log = structlog.get_logger(__name__)

Handler = Callable[[list[Delivered]], Awaitable[bool]]

_HANDLERS = "_cityops_handlers"
_ALIGNED = "_cityops_aligned"


#: how long a fetch of a worker reading only aligned topics waits for records while some
#: are held back (``collect`` releases them only at the next delivery)
HELD_WAIT_S = 0.01


def register(app: Any, topic: str, handler: Handler, *, aligned: bool = False) -> None:
    """Send ``topic``'s fetched records to ``handler`` (a stage's whole step); ``aligned``:
    read its partitions in record-time order (``streams.alignment``)."""
    handlers = getattr(app, _HANDLERS, None)
    if handlers is None:
        handlers = {}
        setattr(app, _HANDLERS, handlers)
    handlers[topic] = handler
    if aligned:
        if getattr(app, _ALIGNED, None) is None:
            setattr(app, _ALIGNED, set())
        getattr(app, _ALIGNED).add(topic)


def handlers_of(app: Any) -> dict[str, Handler]:
    return dict(getattr(app, _HANDLERS, None) or {})


def aligned_of(app: Any) -> set[str]:
    return set(getattr(app, _ALIGNED, None) or ())


def install(batch_max: int, align_ms: int = 0, live_ms: int = LIVE_MS) -> None:
    """Patch Faust's consumer loop (idempotent; the last settings win; ``align_ms`` 0: no
    alignment; ``live_ms``: ``PartitionAligner.live_ms``)."""
    from faust.transport import consumer as fconsumer

    base = fconsumer.Consumer
    base._cityops_batch_max = max(1, batch_max)  # type: ignore[attr-defined]
    base._cityops_align_ms = max(0, align_ms)  # type: ignore[attr-defined]
    base._cityops_align_live_ms = max(0, live_ms)  # type: ignore[attr-defined]
    if getattr(base, "_cityops_dispatch", False):
        return
    base._drain_messages = _drain_messages  # type: ignore[method-assign]
    base._cityops_dispatch = True  # type: ignore[attr-defined]


#: records between a partition's position and its end below which it holds no other back.
#: Live, every partition is a few records from its end between fetches: holding records
#: for such a partition added seconds to the p99 latency at 1,000 events/s. Behind a
#: backlog a partition is far more; only the last few records of each are read unaligned.
#: A live partition is also never behind however many records it has unread after a slow
#: step (``PartitionAligner.live``: its last delivered record is seconds old).
FAR_BEHIND = 100


def _state_of(client: Any, tp: Any) -> Any:
    """aiokafka's state of an assigned partition (position, end, paused), or None (not, or
    not yet, assigned in the client: mid-rebalance)."""
    try:
        return client._subscription.subscription.assignment.state_value(tp)
    except Exception:
        return None


def _behind(client: Any, tp: Any) -> bool:
    """Is ``tp`` far behind its end (or are its position and end not known yet: its first
    fetch)? Its consumed position moves as a fetch hands records over."""
    state = _state_of(client, tp)
    if state is None:
        return False
    if not state.has_valid_position or state.highwater is None:
        return True
    return bool(state.highwater - state.position > FAR_BEHIND)


def _queued(client: Any, tp: Any) -> bool:
    """Does the client hold fetched records of ``tp`` not handed over yet (aiokafka's
    buffer, served in turn: ``streams.fair_fetch``)? A fetch error there is not records."""
    try:
        entry = client._fetcher._records.get(tp)
        return isinstance(entry, FetchResult) and bool(entry.has_more())
    except Exception:  # the client's internals moved: the floor's stall clock as before
        return False


def _floor_facts(client: Any, aligner: PartitionAligner, topic: str,
                 held: dict[Any, list[Any]], now_s: float) -> dict[str, Any]:
    """Where a stalled floor stood, for its warning: the limit it went past, its partition,
    record time, records taken, seconds since it last moved, records held back, and what the
    client knew of it (position, end, paused, records fetched and not handed over yet)."""
    floor = aligner.stalled_floor(topic)
    if floor is None:
        return {"stall_s": aligner.stall_s}
    tp, taken, since, limit = floor
    state = _state_of(client, tp)  # the client's own view (best effort: a diagnostic)
    return {"stall_s": limit, "floor_partition": getattr(tp, "partition", tp),
            "floor_at_ms": aligner.at(tp), "floor_taken": taken,
            "floor_still_s": round(now_s - since, 1), "floor_held": len(held.get(tp, ())),
            "floor_paused_here": tp in aligner.paused,
            "floor_position": getattr(state, "position", None),
            "floor_highwater": getattr(state, "highwater", None),
            "floor_paused": bool(getattr(state, "paused", False)),
            "floor_queued": _queued(client, tp)}


def _ts_ms(message: Any) -> int:
    """A record's broker timestamp in ms (-1 if it has none: never held back)."""
    ts = message.timestamp
    return -1 if ts is None else int(ts * 1000)


class InFlight:
    """Stands in Faust's set of unacknowledged messages for one step's records while the
    step runs, so a rebalance or a stop still waits for it (``Consumer.wait_empty``). One
    weak reference per step instead of one per record: the per-record ``WeakSet.add`` was
    the largest single cost of this loop (2 % of the worker in the drain's profile)."""

    refcount = 1  # what ``wait_empty`` prints of each message it waits for

    def __init__(self, records: list[Any]) -> None:
        self.records = records  # the step's messages (the task dump lists their offsets)
        self.acked = False

    def __repr__(self) -> str:
        return f"<step of {len(self.records)} records>"


def ack_many(consumer: Any, messages: list[Any]) -> int:
    """Faust's ``Consumer.ack`` for a step's records at once: the same bookkeeping (the
    acknowledged offsets a commit reads), under Faust's ``ack_lock`` once, one wake-up of a
    commit waiting for acks. Returns how many were newly acknowledged."""
    from faust.types.tuples import ack_lock
    from mode.utils.futures import notify

    enabled: dict[str, bool] = {}
    acks_enabled_for = consumer.app.topics.acks_enabled_for
    committed_of = consumer._committed_offset
    acked_index, acked = consumer._acked_index, consumer._acked
    n = 0
    with ack_lock:
        for message in messages:
            if message.acked:
                continue
            message.acked = True
            topic = message.topic
            on = enabled.get(topic)
            if on is None:
                on = enabled[topic] = bool(acks_enabled_for(topic))
            if not on:
                continue
            tp, offset = message.tp, message.offset
            committed = committed_of[tp]
            if committed is None or offset >= committed:
                index = acked_index[tp]
                if offset not in index:
                    index.add(offset)
                    acked[tp].append(offset)
                    n += 1
        consumer._n_acked += n
        if enabled:
            notify(consumer._waiting_for_ack)
    return n


class StepChain:
    """The steps of a delivery: a topic's steps one after another, different topics' side
    by side, each acknowledged once its handler returned True.

    A step is started as soon as its topic's batch is full, and the fetch is read on while
    it waits for the broker (its outputs and state acknowledged): the event loop otherwise
    sat idle in those waits, one step at a time. A topic's step waits for the topic's
    previous one, whichever delivery started it, so a partition's records are still
    stepped, and acknowledged, in offset order.
    """

    def __init__(self, handlers: dict[str, Handler], ack: Callable[[list[Any]], Any],
                 acquire_flow: Callable[[], Awaitable[Any]], unacked: Any) -> None:
        self.handlers = handlers
        self.ack = ack
        self.acquire_flow = acquire_flow
        self.unacked = unacked  # Faust's unacknowledged set: an ``InFlight`` per step
        self.tails: dict[str, asyncio.Future[None]] = {}  # topic → its newest step
        self.live: set[asyncio.Future[None]] = set()  # every step not ended yet
        #: steps started but not handed to their handler yet (waiting for the topic's
        #: previous step or for flow control)
        self.waiting: set[asyncio.Future[None]] = set()

    def start(self, topic: str, records: list[Any]) -> asyncio.Future[None]:
        """Start a step over ``records`` after the topic's previous one."""
        task = asyncio.ensure_future(self._step(self.tails.get(topic), topic, records))
        self.tails[topic] = task
        for steps in (self.live, self.waiting):
            steps.add(task)
            task.add_done_callback(steps.discard)
        return task

    def drop_waiting(self) -> None:
        """Cancel the steps not handed to their handler yet (a rebalance or a stop): their
        records are neither handled nor acknowledged, and are fetched again from the
        committed offsets. Left alone, such a step would wait for flow control to resume
        after the rebalance and then handle records of partitions perhaps gone elsewhere."""
        for task in list(self.waiting):
            task.cancel()

    async def _step(self, previous: asyncio.Future[None] | None, topic: str,
                    records: list[Any]) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])  # its outcome is its own: a failed step has
            # already stopped the worker for a replay, and its records stay unacknowledged
        await self.acquire_flow()
        current = asyncio.current_task()
        if current is not None:
            self.waiting.discard(current)  # handed over: from here on it runs to its end
        token = InFlight(records)
        self.unacked.add(token)
        try:
            ok = await self.handlers[topic]([Delivered(m, m.value) for m in records])
        except Exception:
            ok = False  # never acknowledged: the restart (or the next fetch) replays them
        finally:
            token.acked = True
            self.unacked.discard(token)
        if ok is True:
            self.ack(records)

    async def finish(self, steps: list[asyncio.Future[None]]) -> None:
        """Wait for ``steps``; a caller cancelled meanwhile leaves them running to their end
        (``asyncio.wait`` cancels nothing it waits for)."""
        pending = [step for step in steps if not step.done()]
        if pending:
            await asyncio.wait(pending)

    def in_flight(self) -> list[asyncio.Future[None]]:
        """Every step not ended yet, whichever delivery started it (a topic's newest step
        alone would not do: dropped, it ends before the step it waited for)."""
        return list(self.live)


async def _drain_messages(self: Any, fetcher: Any) -> None:
    from faust.transport import consumer as fconsumer

    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    handlers = handlers_of(self.app)
    batch_max: int = self._cityops_batch_max

    def ack(messages: list[Any]) -> None:
        ack_many(self, messages)

    steps = StepChain(handlers, ack, self.app.flow_control.acquire, self._unacked_messages)
    rewound: dict[Any, int] = {}  # partition → the offset it was sought back to
    aligned = aligned_of(self.app) if self._cityops_align_ms else set()
    aligner = PartitionAligner(self._cityops_align_ms, live_ms=self._cityops_align_live_ms)
    held: dict[Any, list[Any]] = {}  # aligned partition → records held back, in order
    stalled: set[str] = set()  # topics whose stalled floor was logged
    generation = [self.app.consumer_generation_id]
    # records held back are handed over at the next delivery, which records of the other
    # topics (clean ones, the alert input) bring on at once; a worker that reads only
    # aligned topics (``CITYOPS_WORKER_STAGES=validation``) waited for its fetch's 1 s
    # timeout each time, and drained a backlog at 2,000 events/s instead of 5,900. A short
    # wait for every worker cost the others' live latency (p99 3.0-3.1 s at 5,000 events/s
    # against 1.5-2.2 s): each empty fetch realigns every partition again
    only_aligned = bool(aligned) and set(handlers) <= aligned

    def views() -> dict[Any, PartitionView]:
        gen = self.app.consumer_generation_id
        if gen != generation[0]:  # a rebalance: every position was sought again
            generation[0] = gen
            held.clear()  # Faust resumes every partition it assigned (ours included)
            aligner.forget([*aligner.last_ts, *aligner.paused, *aligner.heads])
        out: dict[Any, PartitionView] = {}
        others = self._paused_partitions - aligner.paused
        client = self._thread._ensure_consumer()
        now_ms = int(time.time() * 1000)  # record times are the writers' wall clocks
        for tp in self.assignment():
            if tp.topic in aligned:
                lagging = tp in held or (not aligner.live(tp, now_ms) and _behind(client, tp))
                out[tp] = PartitionView(tp.topic, lagging=lagging, held_elsewhere=tp in others,
                                        queued=lagging and _queued(client, tp))
        aligner.forget([tp for tp in aligner.last_ts if tp not in out])
        for tp in [tp for tp in held if tp not in out]:
            del held[tp]
            aligner.heads.pop(tp, None)
        return out

    def release(floors: dict[str, tuple[Any, int]]) -> list[tuple[Any, Any]]:
        """Held records admitted now, each partition's in order up to its first not."""
        out: list[tuple[Any, Any]] = []
        gen = generation[0]
        for tp in list(held):
            msgs = held[tp]
            n = 0
            while n < len(msgs) and aligner.admits(tp, tp.topic, _ts_ms(msgs[n]), floors):
                n += 1
            out.extend((tp, m) for m in msgs[:n] if m.generation_id == gen)
            del msgs[:n]
            if msgs:
                aligner.heads[tp] = _ts_ms(msgs[0])
            else:
                del held[tp]
                aligner.heads.pop(tp, None)
        return out

    def realign(floors: dict[str, tuple[Any, int]], now: dict[Any, PartitionView]) -> None:
        pause, resume = aligner.plan(now, floors, set(held))
        if pause:
            self.pause_partitions(pause)
        if resume:
            self.resume_partitions(resume)
        for topic in aligned:
            metrics.ALIGN_HELD.labels(topic=topic).set(
                sum(len(m) for tp, m in held.items() if tp.topic == topic))
            metrics.ALIGN_PAUSED.labels(topic=topic).set(
                sum(1 for tp in aligner.paused if now[tp].topic == topic))
        for topic in aligner.stalled - stalled:
            log.warning("stream.align_floor_stalled", topic=topic,
                        note="its oldest partition took no record while the others waited; "
                             "all run until it moves",
                        **_floor_facts(self._thread._ensure_consumer(), aligner, topic, held,
                                       time.monotonic()))
        stalled.clear()
        stalled.update(aligner.stalled)

    async def chained(first: list[tuple[Any, Any]], ait: Any,
                      floors: dict[str, tuple[Any, int]], released_ids: set[int]) -> Any:
        """Held records released first, then the fetch, then what the fetch's records let
        go (a worker with aligned topics only: each layer of async generator costs every
        record a hop).

        After the fetch, held records are released in rounds until a round frees none, as
        further deliveries with nothing new fetched would: the floor's partition moves on
        as its records are taken, and the others follow. Released only at the next
        delivery, each step held about ``CITYOPS_WORKER_ALIGN_MS`` of record time: in a
        300,000-event drain 35 incident, 74 air and 318 footfall records on average, and
        the steps' fixed costs (outputs and dedup deltas sent and awaited, the commit)
        were paid that much more often."""
        for item in first:
            yield item
        async for item in ait:
            yield item
        while held:
            now = views()
            latest = aligner.floors(now, time.monotonic())
            more = release(latest)
            if not more:
                return
            floors.clear()
            floors.update(latest)  # the records' checks and the realignment use them
            released_ids.update(id(message) for _tp, message in more)
            for item in more:
                yield item

    async def deliver(ait: Any) -> None:
        started: list[asyncio.Future[None]] = []
        try:
            floors = await collect(ait, started)
            await steps.finish(started)  # the next fetch is read once these steps ended
        except asyncio.CancelledError:
            # a rebalance never cuts a step in half: every step handed over (by this delivery
            # or, cancelled again, an earlier one) ends before the cancellation goes on; the
            # steps not handed over yet never run (their records are fetched again)
            steps.drop_waiting()
            await asyncio.shield(steps.finish(steps.in_flight()))
            raise
        if aligned:
            realign(floors, views())

    async def collect(ait: Any, started: list[asyncio.Future[None]]
                      ) -> dict[str, tuple[Any, int]]:
        """Read the fetch; start each topic's step as its batch fills (and the rest at the
        end); returns the alignment floors the fetch was read with."""
        since_yield = 0
        batches: dict[str, list[Any]] = {}
        stale: set[Any] = set()
        floors: dict[str, tuple[Any, int]] = {}
        first: list[tuple[Any, Any]] = []
        if aligned:
            now = views()
            floors = aligner.floors(now, time.monotonic())
            first = release(floors)
        released_ids = {id(message) for _tp, message in first}
        async for tp, message in (chained(first, ait, floors, released_ids)
                                  if aligned else ait):
            since_yield += 1
            if since_yield > 100:
                await asyncio.sleep(0)
                since_yield = 0
            if tp in stale:
                continue
            if aligned and message.topic in aligned and (
                    not released_ids or id(message) not in released_ids) and (
                    tp in held or not aligner.admits(tp, message.topic, _ts_ms(message), floors)):
                if tp not in held:
                    held[tp] = []
                    aligner.heads[tp] = _ts_ms(message)
                held[tp].append(message)  # after its partition's others
                continue
            offset = message.offset
            r_offset = get_read_offset(tp)
            if r_offset is None or offset >= r_offset:
                gap = offset - (r_offset or 0)
                if gap > 1 and r_offset is not None and acks_enabled_for(message.topic):
                    if message.topic in handlers and rewound.get(tp) != r_offset:
                        # records skipped on a topic without holes: a batch fetched before
                        # the seek Faust just made; fetch again from where it sought to
                        stale.add(tp)
                        held.pop(tp, None)  # fetched again from the offset sought to
                        aligner.heads.pop(tp, None)
                        rewound[tp] = r_offset
                        await self.seek(tp, r_offset)
                        set_read_offset(tp, r_offset)  # Faust's seek forgets an offset 0
                        continue
                    if r_offset:  # sought back once and still beyond: the records are gone
                        await self._add_gap(tp, r_offset + 1, offset)  # (retention)
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                if message.topic in handlers:
                    # read offsets move as messages are taken, as Faust's own loop does (a
                    # seek after a rebalance resets them, so nothing taken is skipped)
                    set_read_offset(tp, offset)
                    if message.topic in aligned:
                        aligner.delivered(tp, _ts_ms(message))
                    batch = batches.setdefault(message.topic, [])
                    batch.append(message)
                    if len(batch) >= batch_max:
                        started.append(steps.start(message.topic,
                                                   batches.pop(message.topic)))
                    continue
                await callback(message)
                set_read_offset(tp, offset)
        started.extend(steps.start(topic, records) for topic, records in batches.items())
        return floors

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(fconsumer.CONSUMER_FETCHING)
            ait = getmany(timeout=HELD_WAIT_S if held and only_aligned else 1.0)
            await self.sleep(0)
            if not self.should_stop:
                await self.wait_first(deliver(ait), self.suspend_flow.wait())
            unset_flag(fconsumer.CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(fconsumer.CONSUMER_FETCHING)
