"""Every topic the worker produces to stays in its producer's metadata."""

from __future__ import annotations

from typing import Any


def track_topic(producer: Any, name: str) -> None:
    """Keep ``name`` in the metadata the aiokafka producer refreshes, before a record for it
    is queued.

    The producer starts by reading the metadata of every topic, and tracks a topic only when
    a first ``send`` finds it missing there. Once it tracks one (a state log the worker
    creates after it started), each refresh asks for the tracked topics only, and every
    topic it never tracked leaves its metadata: a batch queued for one then had no leader,
    the sender waited for metadata that never named it, and the step waiting on the batch
    hung until ``CITYOPS_WORKER_STEP_TIMEOUT_S`` (bench drains, 2026-12-03; ``docs/streams.md``,
    delivery guarantee 1). ``add_topic`` and ``_topics`` are aiokafka's own (the pinned
    version's; ``tests/integration/streams/test_publish_many.py`` checks the behaviour).
    """
    client = producer.client
    if name not in client._topics:
        client.add_topic(name)  # a refresh now; the topic stays in every later one
