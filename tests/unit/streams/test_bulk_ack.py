"""A step's records acknowledged at once (``dispatch.ack_many``) leave Faust's consumer in
the state its own per-message ``Consumer.ack`` leaves: the offsets a commit reads, the
count that triggers a commit, the records marked acknowledged."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakSet

from faust.transport.consumer import Consumer

from cityops.streams.dispatch import InFlight, ack_many


@dataclass(eq=False)
class Msg:
    topic: str
    partition: int
    offset: int
    acked: bool = False

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)


@dataclass
class _Topics:
    disabled: set[str]

    def acks_enabled_for(self, topic: str) -> bool:
        return topic not in self.disabled


@dataclass
class _App:
    topics: _Topics


@dataclass
class ConsumerState:
    """The attributes of Faust's ``Consumer`` that acknowledging reads and writes."""

    app: _App
    _committed_offset: dict[Any, int | None]
    _acked_index: dict[Any, set[int]] = field(default_factory=lambda: defaultdict(set))
    _acked: dict[Any, list[int]] = field(default_factory=lambda: defaultdict(list))
    _n_acked: int = 0
    _waiting_for_ack: Any = None
    _unacked_messages: WeakSet = field(default_factory=WeakSet)


def _state() -> ConsumerState:
    committed: dict[Any, int | None] = defaultdict(lambda: None)
    committed[("raw", 0)] = 10  # offsets below 10 were committed before
    return ConsumerState(_App(_Topics({"untracked"})), committed)


def _messages() -> list[Msg]:
    msgs = [Msg("raw", 0, o) for o in (8, 9, 10, 11, 12)]  # two below the committed offset
    msgs += [Msg("raw", 1, o) for o in range(5)]
    msgs += [Msg("raw", 1, 3)]  # the same offset again (a re-read record)
    msgs += [Msg("untracked", 0, 0)]  # a topic Faust does not commit
    already = Msg("raw", 2, 7, acked=True)  # acknowledged before: nothing changes
    return [*msgs, already]


def _snapshot(state: ConsumerState, msgs: list[Msg]) -> tuple:
    return ({tp: sorted(v) for tp, v in state._acked.items()},
            {tp: sorted(v) for tp, v in state._acked_index.items() if v},
            state._n_acked, [m.acked for m in msgs])


def test_ack_many_leaves_the_state_fausts_ack_leaves() -> None:
    theirs, ours = _state(), _state()
    their_msgs, our_msgs = _messages(), _messages()
    for m in their_msgs:
        Consumer.ack(theirs, m)  # type: ignore[arg-type]
    newly = ack_many(ours, our_msgs)

    assert _snapshot(ours, our_msgs) == _snapshot(theirs, their_msgs)
    assert newly == theirs._n_acked == 3 + 5
    assert ours._acked[("raw", 0)] == [10, 11, 12]


def test_ack_many_twice_counts_nothing_twice() -> None:
    state, msgs = _state(), _messages()
    ack_many(state, msgs)
    before = _snapshot(state, msgs)
    assert ack_many(state, msgs) == 0
    assert _snapshot(state, msgs) == before


def test_a_step_in_flight_holds_fausts_wait_for_unacknowledged_records() -> None:
    unacked: WeakSet = WeakSet()
    token = InFlight([Msg("raw", 0, o) for o in range(500)])
    unacked.add(token)
    # what ``Consumer.wait_empty`` and ``_clean_unacked_messages`` read of each entry
    assert unacked and not token.acked and token.refcount == 1
    assert repr(token) == "<step of 500 records>"
    assert {m for m in unacked if m.acked} == set()
    token.acked = True
    unacked.discard(token)
    assert not unacked
