"""A consumer group's backlog, rate and time to catch up, from its offsets (no broker)."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from cityops.core.settings import Settings
from cityops.deploy.backlog import GroupBacklog, TopicOffsets, backlog_of, groups_of, progress


class TP(NamedTuple):
    topic: str
    partition: int


def _group(name: str, committed: int, end: int, topic: str = "t") -> GroupBacklog:
    return GroupBacklog(name, "validation", 1, {topic: TopicOffsets(committed, end)})


def test_a_group_catching_up_is_given_its_rate_and_when_it_will_be_at_the_end() -> None:
    before = [_group("g", 1_000, 61_000)]
    after = [_group("g", 31_000, 66_000)]  # 30,000 committed and 5,000 written in 10 s
    (p,) = progress(before, after, 10.0)
    assert p.group.behind == 35_000
    assert p.committed_per_s == 3_000 and p.arrived_per_s == 500
    assert p.eta_s == pytest.approx(35_000 / 2_500)
    assert p.to_json()["eta_s"] == 14.0


def test_a_backlog_that_grows_has_no_time_to_catch_up() -> None:
    (p,) = progress([_group("g", 0, 1_000)], [_group("g", 100, 2_000)], 1.0)
    assert p.eta_s is None
    assert p.to_json()["eta_s"] is None


def test_a_group_at_the_end_is_caught_up_even_if_it_stands_still() -> None:
    (p,) = progress([_group("g", 500, 500)], [_group("g", 500, 500)], 5.0)
    assert p.group.behind == 0 and p.eta_s == 0.0


def test_a_group_first_seen_in_the_second_reading_has_no_rate_yet() -> None:
    (p,) = progress([], [_group("new", 10, 20)], 2.0)
    assert (p.committed_per_s, p.arrived_per_s, p.eta_s) == (0.0, 0.0, None)


def test_readings_at_the_same_moment_are_refused() -> None:
    with pytest.raises(ValueError, match="apart"):
        progress([], [], 0.0)


def test_an_uncommitted_partition_counts_from_its_log_start() -> None:
    """Where the group would begin: the records still retained, not the offsets' sum."""
    ends = {TP("raw", 0): 100, TP("raw", 1): 80, TP("other", 0): 999}
    starts = {TP("raw", 0): 0, TP("raw", 1): 30, TP("other", 0): 0}
    g = backlog_of("g", "validation", 0, ["raw"], {TP("raw", 0): 60}, starts, ends)
    assert g.topics == {"raw": TopicOffsets(60 + 30, 180)}  # the other topic is not read
    assert g.behind == 40 + 50
    assert g.used


def test_a_group_without_members_or_commits_is_not_in_use() -> None:
    ends = {TP("raw", 0): 100}
    g = backlog_of("g", "aggregation", 0, ["raw"], {}, {TP("raw", 0): 0}, ends)
    assert not g.used and g.behind == 100
    assert backlog_of("g", "aggregation", 2, ["raw"], {}, {}, ends).used


def test_the_deployments_groups_are_every_layouts_and_the_sinks() -> None:
    settings = Settings(topic_prefix="yz")
    groups = groups_of(settings)
    roles = {role for role, _topics in groups.values()}
    assert roles == {"all", "validation", "aggregation", "sink"}
    by_role = {role: (g, topics) for g, (role, topics) in groups.items()}
    assert by_role["validation"][0] == f"{settings.worker_id}.validation"
    assert all(".raw." in t for t in by_role["validation"][1])
    assert "yz.clean.footfall" in by_role["sink"][1]
    assert not any(".raw." in t for t in by_role["sink"][1])


def test_a_refused_reading_is_one_broker_error_and_no_answer_is_unreachable() -> None:
    from kafka import errors as kerr

    from cityops.deploy.backlog import broker_errors
    from cityops.deploy.exceptions import BrokerError, BrokerUnreachable, TopicSetupError

    with pytest.raises(BrokerError) as refused, broker_errors("b:9092"):
        raise kerr.GroupAuthorizationFailedError("error_message='Not authorized to access group'")
    assert not isinstance(refused.value, TopicSetupError)  # not the topics' error
    assert str(refused.value) == ("Kafka at b:9092 did not give the offsets asked for: "
                                  "GroupAuthorizationFailedError: Not authorized to access group")
    with pytest.raises(BrokerUnreachable, match="no Kafka broker answered at b:9092"), \
            broker_errors("b:9092"):
        raise kerr.KafkaTimeoutError()
