"""The worker layouts' consumer groups: one layout at a time, and a switch reads nothing twice.

A worker running every step reads the raw and clean topics and the alert input in group
``<worker id>``; the split layout reads the raw topics in ``<worker id>.validation`` and the
clean topics and the alert input in ``<worker id>.aggregation``
(``Settings.worker_group``). Both layouts share the state logs, so either takes over the
other's state; but a group new to a partition had no committed offset and read it from the
earliest record: switching a deployment's layout re-read every retained record (7 days by
default), each one recognised as a replay and skipped, but fetched and decoded again.

Before a worker starts, ``prepare_group`` moves its group, for each partition it reads, to
the furthest offset any layout's group committed there. A committed offset means every
record before it was handled, its outputs and state delivered (``docs/streams.md``,
guarantee 1), whichever layout did it; so the move skips only what is done. A group with
members is left alone: its running workers own its offsets (and the broker refuses a
commit from outside them).

Two layouts must not run side by side on the same topics: each group reads every partition,
so both would validate (or aggregate) every record, and their dedup and window state, shared
through the state logs, would be written by two owners at once. ``prepare_group`` refuses to
start a worker while a group of another layout that reads any of its topics has members.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import structlog

from cityops.core import topics
from cityops.core.kafka_security import kafka_python_security
from cityops.core.settings import Settings, WorkerStages
from cityops.streams.exceptions import WorkerStartError

log = structlog.get_logger(__name__)

#: the steps each kind of worker runs
_STEPS: dict[str, tuple[str, ...]] = {
    "all": ("validation", "aggregation"), "validation": ("validation",),
    "aggregation": ("aggregation",)}
#: attempts at describing the groups while a coordinator is still unknown or loading (a broker
#: just started has none until it has created its offsets topic)
DESCRIBE_ATTEMPTS = 20


def alert_input_topic(settings: Settings) -> str:
    """The alert engine's input topic (one partition, in the worker's own namespace)."""
    return f"{settings.worker_id}-alert-input"


def topics_read(settings: Settings, stages: str) -> set[str]:
    """The topics a worker running ``stages`` reads in its consumer group."""
    steps = _STEPS[stages]
    read: set[str] = set()
    if "validation" in steps:
        read.update(settings.topic(topics.raw(feed)) for feed in topics.FEEDS)
    if "aggregation" in steps:
        read.update(settings.topic(topics.clean(feed)) for feed in topics.FEEDS)
        read.add(alert_input_topic(settings))
    return read


def layout_groups(settings: Settings) -> dict[str, str]:
    """Every layout's consumer group → the steps its workers run."""
    return {settings.model_copy(update={"worker_stages": stages}).worker_group: stages
            for stages in _STEPS}


def offsets_to_carry(own: Mapping[Any, int], others: Iterable[Mapping[Any, int]],
                     read: set[str]) -> dict[Any, int]:
    """Partitions (``.topic``) of ``read`` where another group committed further than
    ``own``, with that furthest offset."""
    furthest: dict[Any, int] = {}
    for committed in others:
        for tp, offset in committed.items():
            if tp.topic in read and offset > furthest.get(tp, -1):
                furthest[tp] = offset
    return {tp: offset for tp, offset in furthest.items() if offset > own.get(tp, -1)}


def running_beside(settings: Settings, members: Mapping[str, int]) -> list[str]:
    """Groups of other layouts, among ``members`` (group → its members), that have members
    and read a topic this worker reads."""
    groups = layout_groups(settings)
    own = settings.worker_group
    mine = topics_read(settings, settings.worker_stages)
    return sorted(g for g, n in members.items()
                  if g != own and g in groups and n > 0 and topics_read(settings, groups[g]) & mine)


def _members(admin: Any, groups: list[str]) -> dict[str, int]:
    """Each group's member count (a group never used: 0). Retried while a coordinator is
    unknown or still loading: a broker just started answers so for a few seconds (the first
    ``make run`` on a fresh broker skipped the check with ``CoordinatorNotAvailableError``)."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_fixed

    def retriable(exc: BaseException) -> bool:
        return isinstance(exc, _NotDescribed) or bool(getattr(exc, "retriable", False))

    for attempt in Retrying(stop=stop_after_attempt(DESCRIBE_ATTEMPTS), wait=wait_fixed(0.5),
                            retry=retry_if_exception(retriable), reraise=True):
        with attempt:
            described = admin.describe_groups(groups)
            errors = {g: d.get("error") for g, d in described.items() if d.get("error")}
            if errors:
                raise _NotDescribed(str(errors)[:300])
            return {g: len(d.get("members") or ()) for g, d in described.items()}
    raise AssertionError("unreachable: tenacity reraises")


class _NotDescribed(Exception):
    """A group's description came back with an error."""


def prepare_group(settings: Settings) -> dict[Any, int]:
    """Before a worker starts: refuse a layout running beside another on the same topics
    (``WorkerStartError``), then move this worker's group to the other layouts' furthest
    committed offsets (see the module); returns what was moved. A broker error leaves the
    group as it was: the worker then starts as before, from its own offsets."""
    from kafka.admin import KafkaAdminClient
    from kafka.structs import OffsetAndMetadata

    stages: WorkerStages = settings.worker_stages
    own = settings.worker_group
    groups = layout_groups(settings)
    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers.split(","),
                                 client_id=f"{own}-offsets",
                                 **kafka_python_security(settings))
    except Exception as exc:
        log.warning("worker.offsets_not_carried", group=own, error=f"{type(exc).__name__}: "
                    f"{exc}"[:300])
        return {}
    try:
        members = _members(admin, list(groups))
        beside = running_beside(settings, members)
        if beside:
            raise WorkerStartError(
                f"another layout is running on this worker's topics: group(s) "
                f"{', '.join(beside)} have members. Two layouts would both handle every "
                f"record; stop those workers first (or run --stages "
                f"{groups[beside[0]]} like them)")
        committed = {}
        for group in groups:  # one group per request: brokers before Kafka 3.0 take one
            offsets = admin.list_group_offsets(group).get(group) or {}
            committed[group] = {tp: meta.offset for tp, meta in offsets.items()
                                if meta is not None and meta.offset >= 0}
        carry = offsets_to_carry(committed.get(own, {}),
                                 [c for g, c in committed.items() if g != own],
                                 topics_read(settings, stages))
        if not carry:
            return {}
        if members.get(own, 0):
            log.info("worker.offsets_kept", group=own, members=members[own],
                     partitions=len(carry))
            return {}
        errors = admin.alter_group_offsets(
            own, {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in carry.items()})
        failed = {f"{tp.topic}/{tp.partition}": err.__name__ for tp, err in errors.items()
                  if err.__name__ != "NoError"}
        if failed:
            log.warning("worker.offsets_not_carried", group=own, failed=failed)
            return {tp: o for tp, o in carry.items() if f"{tp.topic}/{tp.partition}"
                    not in failed}
        log.info("worker.offsets_carried", group=own, partitions=len(carry),
                 from_groups=sorted(g for g in committed if g != own and committed[g]))
        return carry
    except WorkerStartError:
        raise
    except Exception as exc:  # the worker starts from its own offsets, as before
        log.warning("worker.offsets_not_carried", group=own,
                    error=f"{type(exc).__name__}: {exc}"[:300])
        return {}
    finally:
        admin.close()
