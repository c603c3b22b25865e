"""A unit's state log as full records and the steps' changes (``streams.state_chain``).

The records are written as the aggregation step writes them (``next_record``, JSON through
orjson, the latest value per key kept as a compacted topic keeps it) and read back with
``fold``: the state read must equal the state written, for every feed's aggregator, across
new chains and restarts; a change record must be a fraction of the state it changes.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from simulated_clean import clean_events

from cityops.core.registry import Registry
from cityops.core.settings import FEEDS, Settings
from cityops.streams.feed_aggregators import Aggregator, aggregator_for
from cityops.streams.state_chain import (
    MAX_CHANGES,
    Position,
    apply,
    change_key,
    diff,
    fold,
    next_record,
)
from cityops.streams.state_log import JSON_OPTIONS, StateLog

EMITTED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
STEP = 40  # events per step


def _json(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, option=JSON_OPTIONS))


# --- diff / apply ---------------------------------------------------------------------------
def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(6 if depth < 4 else 4)
    if kind == 0:
        return rng.randrange(-5, 5)
    if kind == 1:
        return rng.choice(["a", "b", "", "~1"])
    if kind == 2:
        return rng.choice([None, True, False, 1.5])
    if kind == 3:
        return [rng.randrange(3) for _ in range(rng.randrange(3))]
    return {rng.choice("abcdefgh"): _random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


def _mutate(rng: random.Random, doc: dict[str, Any]) -> dict[str, Any]:
    out = _json(doc)
    for _ in range(rng.randrange(1, 4)):
        target = out
        while True:  # walk down into a random nested object, sometimes
            inner = [k for k, v in target.items() if isinstance(v, dict)]
            if not inner or rng.random() < 0.4:
                break
            target = target[rng.choice(inner)]
        op = rng.randrange(3)
        if op == 0 and target:
            del target[rng.choice(list(target))]
        elif op == 1:
            target[rng.choice("abcdefghij")] = _random_json(rng, 2)
        elif target:
            target[rng.choice(list(target))] = _random_json(rng, 3)
    return out


def test_a_diff_applied_to_the_old_object_gives_the_new_one() -> None:
    rng = random.Random(7)
    changed = 0
    for _ in range(3000):
        old = {k: _random_json(rng, 1) for k in "abcdef"[: rng.randrange(1, 6)]}
        new = _mutate(rng, old)
        patch = diff(old, new)
        assert apply(_json(old), _json(patch)) == new
        changed += patch != {}
        assert (patch == {}) == (old == new)
    assert changed > 2000


def test_a_diff_enters_a_changed_object_and_leaves_the_unchanged_alone() -> None:
    old = {"windows": {"1.0": {"acc": {"n": 1}, "fired": False}, "2.0": {"acc": {"n": 2}}},
           "max_ts": 1.0, "gone": [1]}
    new = {"windows": {"1.0": {"acc": {"n": 3}, "fired": False}, "3.0": {"acc": {"n": 1}}},
           "max_ts": 2.0}
    assert diff(old, new) == {
        "s": {"max_ts": 2.0}, "d": ["gone"],
        "p": {"windows": {"s": {"3.0": {"acc": {"n": 1}}}, "d": ["2.0"],
                          "p": {"1.0": {"p": {"acc": {"s": {"n": 3}}}}}}}}
    # an object replaced by something else, and the other way round
    assert diff({"a": {"x": 1}}, {"a": [1]}) == {"s": {"a": [1]}}
    assert apply({"a": 5}, {"p": {"a": {"s": {"x": 1}}}}) == {"a": {"x": 1}}


# --- the records of a run of aggregation steps ----------------------------------------------
class Log:
    """A compacted partition as a read sees it: the latest value per key."""

    def __init__(self) -> None:
        self.live: dict[str, dict[str, Any]] = {}
        self.sizes: list[tuple[bool, int]] = []

    def write(self, key: str, body: bytes) -> None:
        self.live[key] = orjson.loads(body)


class Writer:
    """What ``AggregationStage.publish`` does for its dirty units, with a step counter as
    the replay high-water mark."""

    def __init__(self, log: Log, snaps: dict[str, dict[str, Any]] | None = None,
                 chains: dict[str, Position] | None = None) -> None:
        self.log = log
        self.snaps = snaps if snaps is not None else {}
        self.chains = chains if chains is not None else {}
        self.last_hw: dict[str, int] = {}  # unit → the step of its newest record

    def step(self, agg: Aggregator, units: set[str], hw: int) -> None:
        for unit in sorted(units):
            snap = {"p": 0, "hw": {"0": hw}, "state": agg.to_state(unit)}
            key, body, position = next_record(unit, self.chains.get(unit),
                                              self.snaps.get(unit), snap, StateLog.encode)
            self.log.write(key, body)
            self.log.sizes.append((key == unit, len(body)))
            self.snaps[unit], self.chains[unit] = snap, position
            self.last_hw[unit] = hw


def _run(agg: Aggregator, events: list[Any], writer: Writer, hw0: int = 0) -> int:
    hw = hw0
    for i in range(0, len(events), STEP):
        units: set[str] = set()
        for n, ev in enumerate(events[i:i + STEP]):
            unit = agg.unit(ev.unit(), (i + n) % 6)
            agg.add(unit, ev, EMITTED)
            units.add(unit)
        hw += 1
        writer.step(agg, units, hw)
    return hw


def _states(agg: Aggregator, units: set[str]) -> dict[str, Any]:
    return {u: _json(agg.to_state(u)) for u in units}


@pytest.mark.parametrize("feed", FEEDS)
def test_the_state_read_back_is_the_state_written_for_every_feed(
        feed: str, settings: Settings, registry: Registry) -> None:
    events = clean_events(registry, feed)
    agg = aggregator_for(feed, settings, registry)
    log = Log()
    writer = Writer(log)
    _run(agg, events, writer)
    snaps, positions = fold(log.live)
    assert {u: s["state"] for u, s in snaps.items()} == _states(agg, set(snaps))
    # each unit's high-water mark is the one of the last step that touched it
    assert {u: s["hw"] for u, s in snaps.items()} == {
        u: {"0": hw} for u, hw in writer.last_hw.items()}
    # a car park's state is a list of recent points, replaced as a whole at each step: its
    # change is never much smaller than itself, so it is written whole
    if feed != "parking":
        assert any(not full for full, _ in log.sizes), "no change record was written"
    assert all(p.seq >= 1 for p in positions.values())


@pytest.mark.parametrize("feed", FEEDS)
def test_a_restart_reads_the_chain_and_the_next_chain_goes_on_from_it(
        feed: str, settings: Settings, registry: Registry) -> None:
    events = clean_events(registry, feed)
    half = (len(events) // 2 // STEP) * STEP
    first = aggregator_for(feed, settings, registry)
    log = Log()
    hw = _run(first, events[:half], Writer(log))
    # a new worker: reads the partition, loads every unit, goes on with the rest
    snaps, positions = fold(log.live)
    second = aggregator_for(feed, settings, registry)
    for unit, snap in snaps.items():
        second.from_state(unit, snap["state"])
    assert _states(second, set(snaps)) == {u: s["state"] for u, s in snaps.items()}
    before = {u: p.seq for u, p in positions.items()}
    writer = Writer(log, snaps, positions)
    _run(second, events[half:], writer, hw)
    # its first record of each unit is a full one of the next chain
    assert all(writer.chains[u].seq > before[u] for u in before if u in writer.chains)
    snaps, _ = fold(log.live)
    assert {u: s["state"] for u, s in snaps.items()} == _states(second, set(snaps))


def test_a_lagging_counter_s_zone_writes_changes_a_fraction_of_its_state(
        settings: Settings, registry: Registry) -> None:
    """A zone one of whose counters has not been read yet keeps its windows open (as with
    several workers catching up): its state grows with every minute, a step's change does
    not."""
    events = clean_events(registry, "footfall", hours=4, skip_source=True)
    agg = aggregator_for("footfall", settings, registry)
    log = Log()
    _run(agg, events, Writer(log))
    snaps, _ = fold(log.live)
    assert {u: s["state"] for u, s in snaps.items()} == _states(agg, set(snaps))
    largest = max(len(orjson.dumps(s["state"])) for s in snaps.values())
    assert largest > 50_000  # hours of windows held open
    fulls = [size for full, size in log.sizes if full]
    changes = [size for full, size in log.sizes if not full]
    assert len(changes) > 5 * len(fulls)
    assert sum(changes) / len(changes) < largest / 20
    # what the steps wrote in all, against a whole state at every step
    every_step = sum(len(orjson.dumps(s["state"])) for s in snaps.values()) * len(log.sizes) \
        / len(snaps)
    assert sum(size for _, size in log.sizes) < every_step / 4


def test_changes_of_an_older_chain_under_reused_keys_are_ignored() -> None:
    log = Log()
    writer = Writer(log)
    state: dict[str, Any] = {"n": 0, "pad": "x" * 2000}  # one unit "u", n bumped each step

    class One:
        def to_state(self, unit: str) -> dict[str, Any]:
            return dict(state)

    for i in range(1, 8):
        state["n"] = i
        writer.step(One(), {"u"}, i)  # type: ignore[arg-type]
    assert [full for full, _ in log.sizes] == [True] + [False] * 6
    # a restart: the next write starts chain 2, whose changes reuse the keys u~1, u~2
    snaps, positions = fold(log.live)
    assert snaps["u"]["state"]["n"] == 7 and positions["u"] == Position(seq=1)
    b = Writer(log, snaps, positions)
    for i in range(8, 11):
        state["n"] = i
        b.step(One(), {"u"}, i)  # type: ignore[arg-type]
    assert log.live["u"]["seq"] == 2
    assert log.live[change_key("u", 3)]["base"] == 1  # left over from chain 1
    snaps, _ = fold(log.live)
    assert snaps["u"]["state"]["n"] == 10 and snaps["u"]["hw"] == {"0": 10}


def test_a_full_record_without_a_chain_number_reads_as_chain_0() -> None:
    """A state log written before chains: one full snapshot per unit, no ``seq``."""
    live = {"z": {"p": 3, "hw": {"0": 9}, "state": {"n": 1}}}
    snaps, positions = fold(live)
    assert snaps == {"z": {"p": 3, "hw": {"0": 9}, "state": {"n": 1}}}
    key, body, position = next_record("z", positions["z"], snaps["z"],
                                      {"p": 3, "hw": {"0": 10}, "state": {"n": 2}},
                                      StateLog.encode)
    assert key == "z" and orjson.loads(body)["seq"] == 1 and position.seq == 1


def _state(n: int, pad: int = 1000) -> dict[str, Any]:
    return {"p": 0, "hw": {"0": n}, "state": {"n": n, "pad": "x" * pad}}


def test_a_chain_starts_anew_after_max_changes_or_when_its_changes_outweigh_it() -> None:
    key, body, pos = next_record("u", None, None, _state(0, 10_000), StateLog.encode)
    assert key == "u" and orjson.loads(body)["seq"] == 1 and pos.full_bytes == len(body)
    for m in range(1, MAX_CHANGES + 1):
        key, body, pos = next_record("u", pos, _state(m - 1, 10_000), _state(m, 10_000),
                                     StateLog.encode)
        assert key == change_key("u", m) and orjson.loads(body)["m"] == m
        assert orjson.loads(body)["patch"] == {"s": {"n": m}}
    key, body, pos = next_record("u", pos, _state(64), _state(65), StateLog.encode)
    assert key == "u" and orjson.loads(body)["seq"] == 2
    # changes of about 40 % of the full snapshot: after the third they outweigh it
    key, body, pos = next_record("u", None, None, _state(0, 1000), StateLog.encode)
    full = len(body)
    keys, sizes = [], []
    for i in range(4):
        before, after = _state(0, 1000), _state(0, 1000)
        before["state"]["junk"] = str(i) * (full * 2 // 5 - 80)
        after["state"]["junk"] = str(i + 1) * (full * 2 // 5 - 80)
        key, body, pos = next_record("u", pos, before, after, StateLog.encode)
        keys.append(key)
        sizes.append(len(body))
    assert all(0.35 * full < size < 0.45 * full for size in sizes[:3]), (sizes, full)
    assert keys == [change_key("u", 1), change_key("u", 2), change_key("u", 3), "u"]
    assert pos.seq == 2


def test_a_change_half_as_large_as_the_state_is_written_whole() -> None:
    """A unit whose every step changes most of its state (windows closing as fast as they
    open): a change would be no smaller than the snapshot, so the snapshot is written."""
    _, _, pos = next_record("u", None, None, _state(0, 10), StateLog.encode)
    before = {"p": 0, "hw": {}, "state": {"a": list(range(5))}}
    after = {"p": 0, "hw": {}, "state": {"b": list(range(5))}}
    key, body, pos = next_record("u", pos, before, after, StateLog.encode)
    assert key == "u" and orjson.loads(body) == {**after, "seq": 2}


def test_a_malformed_change_ends_its_unit_s_chain_and_nothing_else() -> None:
    live: dict[str, Any] = {
        "z": {"p": 0, "hw": {"0": 1}, "state": {"n": 1}, "seq": 4},
        "z~1": {"u": "z", "p": 0, "hw": {"0": 2}, "patch": {"s": {"n": 2}}, "base": 4, "m": 1},
        "z~2": {"u": "z", "p": 0, "hw": {"0": 3}, "patch": "garbage", "base": 4, "m": 2},
        "z~3": {"u": "z", "p": 0, "hw": {"0": 4}, "patch": {"s": {"n": 4}}, "base": 4, "m": 3},
        "y": {"p": 0, "hw": {"0": 7}, "state": {"n": 7}, "seq": 1},
        "y~1": {"u": "y", "p": 0, "hw": {"0": 8}, "patch": {}, "base": 1, "m": "one"},
    }
    snaps, positions = fold(live)
    assert snaps["z"] == {"p": 0, "hw": {"0": 2}, "state": {"n": 2}}
    assert snaps["y"] == {"p": 0, "hw": {"0": 7}, "state": {"n": 7}}
    assert positions["z"].seq == 4 and positions["y"].seq == 1
