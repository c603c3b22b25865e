"""After a rebalance, a stage keeps the state of partitions it keeps and forgets the state of
partitions gone elsewhere: another worker moves them on, and an idle-window close here
would otherwise publish and snapshot stale copies. (Partitions newly assigned are read
again from the state log; the several-workers and SIGKILL tests run that on a real broker.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from unit.core.test_feed_contracts import GOOD

from cityops.core.fast_contract import fast_decode
from cityops.core.feeds import ValidationContext
from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.streams.aggregation import AggregationStage
from cityops.streams.alerting import AlertWiring
from cityops.streams.alerts.rules import load_rules
from cityops.streams.app import declare_topics, make_app
from cityops.streams.written import WrittenEvents


def _app(settings: Settings, tmp_path: Any) -> tuple[Any, Any, Settings]:
    s = settings.model_copy(update={"data_dir": tmp_path})
    app = make_app(s)
    return app, declare_topics(app, s), s


def test_aggregation_forgets_units_of_partitions_gone_elsewhere_and_keeps_the_rest(
        settings: Settings, registry: Registry, tmp_path: Any) -> None:
    app, topics, s = _app(settings, tmp_path)
    st = AggregationStage("parking", s, registry, app, topics)
    st.snaps = {0: {"kept": {}}, 2: {"gone": {}}}
    st._load("kept", 0)
    st._load("gone", 2)
    clean = st.clean_topic
    asyncio.run(st.reassigned({(clean, 0), (clean, 1), ("other", 2)}, set()))
    assert st.loaded == {"kept"} and st.partitions == {"kept": 0}
    assert set(st.snaps) == {0}
    assert "gone" not in st.guards and "kept" in st.guards


def test_alert_engine_state_is_dropped_when_its_input_goes_elsewhere(
        settings: Settings, registry: Registry, tmp_path: Any) -> None:
    app, topics, s = _app(settings, tmp_path)
    w = AlertWiring(s, registry, load_rules(None), app, topics.alerts)
    tp = (w.input.get_topic_name(), 0)
    w.owned, w.loaded, w.offset = True, True, 41
    engine = w.engine
    asyncio.run(w.reassigned({tp}, set()))  # kept: nothing changes
    assert (w.owned, w.loaded, w.offset, w.engine) == (True, True, 41, engine)
    asyncio.run(w.reassigned(set(), set()))  # gone: read again if it ever comes back
    assert (w.owned, w.loaded, w.offset) == (False, False, -1)
    assert w.engine is not engine


def test_aggregation_forgets_the_clean_events_kept_for_it_when_partitions_move(
        settings: Settings, registry: Registry, tmp_path: Any) -> None:
    """Kept events and the keys read here may belong to a partition gone elsewhere: a
    rebalance that moves any empties them; one that moves none keeps them."""
    app, topics, s = _app(settings, tmp_path)
    written = WrittenEvents(10)
    st = AggregationStage("parking", s, registry, app, topics, written=written)
    st.snaps = {0: {"kept": {}}, 2: {"gone": {}}}
    st._load("kept", 0)
    st._load("gone", 2)
    written.keys.update({"kept", "gone"})
    raw = orjson.dumps(GOOD["parking"])
    event = fast_decode("parking", raw, ValidationContext(), max_bytes=len(raw))
    assert event is not None and written.put(raw, event, "gone")
    clean = st.clean_topic
    asyncio.run(st.reassigned({(clean, 0), (clean, 2)}, set()))  # nothing moves
    assert written.keys == {"kept", "gone"} and len(written) == 1
    asyncio.run(st.reassigned({(clean, 0), (clean, 1)}, set()))  # partition 2 moved away
    assert not written.keys and len(written) == 0
