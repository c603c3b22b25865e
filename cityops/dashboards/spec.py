"""One definition of every board: panels with their SQL, type, thresholds and grid place.

A ``Panel`` is the single source for both screens: ``grafana.py`` turns it into Grafana JSON
(ClickHouse plugin query, ``editorType: sql``), and the terminal board (``terminal.py``) runs
the very same SQL through ``macros.expand`` over the worker's read-only endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

PanelKind = Literal["timeseries", "stat", "geomap", "table", "heatmap", "bargauge", "barchart",
                    "histogram"]


class Format(IntEnum):
    """The plugin's ``format`` of a SQL query."""

    TIME_SERIES = 0  # a time column, then label columns, then values (long → wide)
    TABLE = 1


@dataclass(frozen=True)
class Query:
    """One SQL target of a panel (``ref_id`` A, B, …)."""

    sql: str
    fmt: Format = Format.TABLE
    ref_id: str = "A"
    #: a long-range query: ``check`` proves granule skipping over 90 days with EXPLAIN
    long_range: bool = False


@dataclass(frozen=True)
class Step:
    """A threshold step: from ``value`` (None: the base) on, the colour."""

    value: float | None
    color: str


@dataclass(frozen=True)
class Panel:
    key: str  # stable id within the board; the terminal board looks panels up by it
    title_zh: str
    title_en: str
    kind: PanelKind
    queries: tuple[Query, ...]
    grid: tuple[int, int, int, int]  # x, y, w, h on Grafana's 24-column grid
    unit: str = ""
    thresholds: tuple[Step, ...] = ()
    description: str = ""
    options: dict = field(default_factory=dict)
    min: float | None = None
    max: float | None = None

    @property
    def title(self) -> str:
        return f"{self.title_zh} · {self.title_en}"


@dataclass(frozen=True)
class Variable:
    """A multi-value template variable filled by a ClickHouse query (All allowed)."""

    name: str
    label: str
    sql: str


@dataclass(frozen=True)
class Board:
    uid: str
    title_zh: str
    title_en: str
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...]
    time_from: str = "now-6h"
    refresh: str = ""  # "5s" on the live boards
    tags: tuple[str, ...] = ("cityops",)

    @property
    def title(self) -> str:
        return f"{self.title_zh} · {self.title_en}"

    def panel(self, key: str) -> Panel:
        for p in self.panels:
            if p.key == key:
                return p
        raise KeyError(key)
