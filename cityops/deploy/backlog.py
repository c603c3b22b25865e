"""How far behind each of the deployment's consumer groups is, and when it will have caught up.

After an outage, the workers and the sink catch up a backlog; an operator asks how much is
left and when it will be done. The answer is read from the broker, not from the workers: it
holds while they are down, whichever layout runs and however many workers share a group.

Per group (every worker layout's, ``streams.layouts.layout_groups``, and the sink's), per
topic it reads: the records after its committed offsets (a partition never committed counts
from the log start, where the group would begin). Two readings some seconds apart give the
rate the group commits at and, while that outruns what arrives, when it will be at the end.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from cityops.core.kafka_security import kafka_python_security
from cityops.core.settings import Settings
from cityops.deploy.exceptions import BrokerError
from cityops.deploy.kafka_local import kafka_errors, quiet_kafka_client
from cityops.ingest.kafka_access import check_access
from cityops.streams.layouts import layout_groups, topics_read
from cityops.warehouse.sink import sink_group, sink_topics

#: how long to wait for the first broker to answer, and for each request
BOOTSTRAP_TIMEOUT_MS = 10_000
REQUEST_TIMEOUT_MS = 15_000


@dataclass(frozen=True)
class TopicOffsets:
    """One topic as one group sees it, summed over its partitions."""

    committed: int  # the group's committed offsets (a partition never committed: its start)
    end: int  # the partitions' end offsets

    @property
    def behind(self) -> int:
        return max(0, self.end - self.committed)


@dataclass(frozen=True)
class GroupBacklog:
    """One consumer group: what it runs, how many members it has, and its topics."""

    group: str
    role: str  # "all", "validation", "aggregation" (worker layouts) or "sink"
    members: int
    topics: dict[str, TopicOffsets] = field(default_factory=dict)
    #: the group has members, or has committed an offset on a topic it reads: it is in use
    used: bool = True

    @property
    def behind(self) -> int:
        return sum(t.behind for t in self.topics.values())

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group, "role": self.role, "members": self.members,
                "used": self.used, "behind": self.behind,
                "topics": {name: {"behind": t.behind, "committed": t.committed, "end": t.end}
                           for name, t in sorted(self.topics.items())}}


@dataclass(frozen=True)
class Progress:
    """A group between two readings ``seconds`` apart."""

    group: GroupBacklog  # the later reading
    seconds: float
    committed_per_s: float  # records the group committed per second
    arrived_per_s: float  # records written to its topics per second

    @property
    def eta_s(self) -> float | None:
        """Seconds until the group is at the end at these rates; 0 when it is there, None
        while the backlog does not shrink."""
        if self.group.behind == 0:
            return 0.0
        net = self.committed_per_s - self.arrived_per_s
        return self.group.behind / net if net > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {**self.group.to_json(), "seconds": round(self.seconds, 3),
                "committed_per_s": round(self.committed_per_s, 1),
                "arrived_per_s": round(self.arrived_per_s, 1),
                "eta_s": None if self.eta_s is None else round(self.eta_s, 1)}


def progress(before: list[GroupBacklog], after: list[GroupBacklog],
             seconds: float) -> list[Progress]:
    """Each group of ``after`` with its rates since ``before``; a group not in ``before``
    gets rates of 0, and so no time to catch up, until the next reading."""
    if seconds <= 0:
        raise ValueError("readings must be apart in time")
    earlier = {g.group: g for g in before}
    out: list[Progress] = []
    for group in after:
        old = earlier.get(group.group)
        committed = arrived = 0
        if old is not None:
            for name, now in group.topics.items():
                was = old.topics.get(name)
                if was is not None:
                    committed += now.committed - was.committed
                    arrived += now.end - was.end
        out.append(Progress(group, seconds, committed / seconds, arrived / seconds))
    return out


def groups_of(settings: Settings) -> dict[str, tuple[str, list[str]]]:
    """The deployment's consumer groups → (role, the topics it reads)."""
    out = {group: (stages, sorted(topics_read(settings, stages)))
           for group, stages in layout_groups(settings).items()}
    out[sink_group(settings)] = ("sink", sorted(sink_topics(settings)))
    return out


def backlog_of(group: str, role: str, members: int, topics: list[str],
               committed: Mapping[Any, int], starts: Mapping[Any, int],
               ends: Mapping[Any, int]) -> GroupBacklog:
    """One group's reading from its committed offsets and the partitions' start and end
    offsets (keyed by topic-partitions with ``.topic``)."""
    by_topic: dict[str, TopicOffsets] = {}
    for tp, end in ends.items():
        if tp.topic not in topics:
            continue
        done = committed.get(tp)
        if done is None or done < 0:
            done = starts.get(tp, 0)
        was = by_topic.get(tp.topic, TopicOffsets(0, 0))
        by_topic[tp.topic] = TopicOffsets(was.committed + done, was.end + end)
    used = members > 0 or any(tp.topic in topics and o >= 0 for tp, o in committed.items())
    return GroupBacklog(group, role, members, by_topic, used)


class OffsetReader:
    """One admin client and one consumer, open across readings: the broker's start and end
    offsets of topics, and consumer groups' committed offsets and members.

    ``kafka backlog --watch``, the bench's drains and the tests ask every second or so. A
    fresh pair of clients per reading cost about 30 ms of CPU (the sink group over 24
    partitions) to 126 ms (both worker groups), and a committed offset asked per partition
    made one request each: on two cores that competed with the drain it watched. Kept open,
    a reading is a handful of requests (one ListOffsets per broker and bound, one OffsetFetch
    per group). Not thread-safe; ``close`` it (or use it as a context manager)."""

    def __init__(self, bootstrap: str, security: Mapping[str, Any] | None = None,
                 client_id: str = "cityops-backlog") -> None:
        from kafka import KafkaAdminClient, KafkaConsumer

        self.bootstrap = bootstrap
        self._admin: Any = None
        self._consumer: Any = None
        with broker_errors(bootstrap):
            try:
                # an unreachable broker: one line (``BrokerUnreachable``), not a log each try
                with quiet_kafka_client():
                    self._admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","),
                                                   client_id=client_id,
                                                   bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
                                                   request_timeout_ms=REQUEST_TIMEOUT_MS,
                                                   **(security or {}))
                self._consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","),
                                               group_id=None, enable_auto_commit=False,
                                               client_id=client_id,
                                               request_timeout_ms=REQUEST_TIMEOUT_MS,
                                               **(security or {}))
            except BaseException:
                self.close()
                raise

    def __enter__(self) -> OffsetReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        for client in (self._consumer, self._admin):
            if client is not None:
                client.close()
        self._consumer = self._admin = None

    def offsets(self, topics: Collection[str]) -> tuple[dict[Any, int], dict[Any, int]]:
        """(start, end) offset of every partition of ``topics`` (a topic not there: none)."""
        from kafka import TopicPartition

        with broker_errors(self.bootstrap):
            parts = [TopicPartition(t, p) for t in sorted(set(topics))
                     for p in sorted(self._consumer.partitions_for_topic(t) or ())]
            if not parts:
                return {}, {}
            return (self._consumer.beginning_offsets(parts), self._consumer.end_offsets(parts))

    def committed(self, group: str) -> dict[Any, int]:
        """``group``'s committed offset per partition (partitions it never committed: none)."""
        with broker_errors(self.bootstrap):
            offsets = self._admin.list_group_offsets(group).get(group) or {}
        return {tp: meta.offset for tp, meta in offsets.items()
                if meta is not None and meta.offset >= 0}

    def members(self, groups: Collection[str]) -> dict[str, int]:
        """How many members each of ``groups`` has now."""
        with broker_errors(self.bootstrap):
            described = self._admin.describe_groups(list(groups))
        return {g: len((described.get(g) or {}).get("members") or ()) for g in groups}

    def behind(self, group: str, topics: Collection[str]) -> int:
        """Records of ``topics`` after ``group``'s committed offsets (a partition it never
        committed counts from its start): 0 once the group has finished them."""
        starts, ends = self.offsets(topics)
        return backlog_of(group, "", 0, list(topics), self.committed(group), starts,
                          ends).behind

    def backlogs(self, groups: Mapping[str, tuple[str, list[str]]]) -> list[GroupBacklog]:
        """A reading of ``groups`` (group → (role, its topics), as ``groups_of`` gives)."""
        starts, ends = self.offsets({t for _role, topics in groups.values() for t in topics})
        members = self.members(list(groups))
        # one group per request: brokers before Kafka 3.0 take one
        return [backlog_of(group, role, members[group], topics, self.committed(group),
                           starts, ends)
                for group, (role, topics) in groups.items()]


def broker_errors(bootstrap: str) -> AbstractContextManager[None]:
    """kafka-python's errors as the deployment's (``kafka_local.kafka_errors``): a broker
    that refuses a reading is one ``BrokerError`` line with Kafka's error name."""
    return kafka_errors(bootstrap, lambda name, detail: BrokerError(
        f"Kafka at {bootstrap} did not give the offsets asked for: {name}: {detail}"))


def open_reader(settings: Settings) -> OffsetReader:
    """An ``OffsetReader`` on the brokers of ``settings``, with its credentials (a refused
    password: one line, not a 30 s wait)."""
    check_access(settings)
    return OffsetReader(settings.bootstrap_servers, kafka_python_security(settings))


def read_backlogs(settings: Settings, reader: OffsetReader | None = None) -> list[GroupBacklog]:
    """Every group's reading, from the brokers of ``settings``: through ``reader`` when
    given (readings taken again and again), else through clients opened for this one."""
    if reader is not None:
        return reader.backlogs(groups_of(settings))
    with open_reader(settings) as own:
        return own.backlogs(groups_of(settings))


def group_lag(bootstrap: str, group: str, topics: Collection[str]) -> int:
    """Records of ``topics`` that consumer group ``group`` has not committed yet (its lag),
    over a PLAINTEXT listener: how tests tell a drain is finished (``OffsetReader.behind``
    for one reading; keep a reader open to ask again and again)."""
    with OffsetReader(bootstrap, client_id="cityops-lag") as reader:
        return reader.behind(group, topics)
