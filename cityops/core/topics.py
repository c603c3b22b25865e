"""The feeds and the Kafka topics they flow through, each name written once.

Names here are suffixes; ``Settings.topic(suffix)`` adds the deployment's prefix. A feed's
events flow ``raw.<feed>`` (as produced) → ``clean.<feed>`` (validated, deduplicated,
enriched) → ``agg.<feed>`` (window aggregates); ``alerts``, ``dlq`` (dead letters) and
``late`` (events past the allowed lateness) are shared by all feeds. Everything downstream of
validation is stored in the warehouse.
"""

from __future__ import annotations

FEEDS: tuple[str, ...] = ("footfall", "parking", "air", "incidents")

RAW, CLEAN, AGG = "raw", "clean", "agg"
ALERTS, DLQ, LATE = "alerts", "dlq", "late"


def raw(feed: str) -> str:
    """Events as producers sent them."""
    return f"{RAW}.{feed}"


def clean(feed: str) -> str:
    """Events that passed their contract, deduplicated and enriched."""
    return f"{CLEAN}.{feed}"


def agg(feed: str) -> str:
    """Window aggregates of a feed."""
    return f"{AGG}.{feed}"


#: every topic the platform uses, in data-flow order
ALL: tuple[str, ...] = (*map(raw, FEEDS), *map(clean, FEEDS), *map(agg, FEEDS),
                        ALERTS, DLQ, LATE)
#: the topics the warehouse sink stores: all but the raw feeds
STORED: tuple[str, ...] = tuple(t for t in ALL if not t.startswith(f"{RAW}."))


def clean_feed(suffix: str) -> str | None:
    """The feed of a ``clean.<feed>`` topic suffix, else None."""
    stage, _, feed = suffix.partition(".")
    return feed if stage == CLEAN and feed in FEEDS else None
