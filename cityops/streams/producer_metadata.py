"""Every topic the worker produces to stays in its producer's metadata, and a step's records
leave at once."""

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


def send_now(producer: Any, topic: str) -> None:
    """Hand the producer's open batches of ``topic`` to its sender now, not after the linger.

    A step awaits its records as soon as it has queued them: the linger
    (``CITYOPS_WORKER_PRODUCER_LINGER_MS``) gathers nothing more then, and only delays the
    acknowledgement the step waits for. The aggregation step waits twice, for its outputs
    and then for its state (``docs/streams.md``, delivery guarantee 2), so a backlog's steps
    spent about 10 ms of each 40–50 ms waiting. A closed batch takes no more records and is
    ready to send (aiokafka's ``MessageBatch.remaining_linger``); the sender is woken as
    when a batch is added. ``_message_accumulator``, ``_batches``, ``_builder`` and
    ``_waiter_future`` are aiokafka's own (the pinned version's;
    ``tests/integration/streams/test_publish_many.py`` checks the behaviour).
    """
    accumulator = producer._message_accumulator
    for tp, batches in accumulator._batches.items():
        if tp.topic == topic:
            for batch in batches:
                batch._builder.close()
    waiter = accumulator._waiter_future
    if not waiter.done():
        waiter.set_result(None)
