"""The night-economy report stays readable at 24 zones over two months: charts show the top
zones plus "others", tables keep every zone, and no two x tick labels overlap."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas
import pytest

from cityops.core.registry import Registry
from cityops.core.settings import Settings
from cityops.warehouse.embedded import EmbeddedWarehouse
from cityops.warehouse.migrate import migrate
from cityops.warehouse.report import TOP_ZONES, night_economy_report, nightly_figure
from tests.integration.warehouse.conftest import drop, open_warehouse

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")
ZONES = [f"zone_{i:02d}" for i in range(24)]
FIRST, NIGHTS = date(2026, 9, 1), 61


@pytest.fixture(scope="module")
def many_zones_wh(settings: Settings, registry: Registry) -> Iterator[EmbeddedWarehouse]:
    wh = open_warehouse(settings)
    migrate(wh, timezone="Asia/Shanghai", raw_ttl_days=0, registry=registry)
    rows = []
    for n in range(NIGHTS):
        evening = datetime.combine(FIRST + timedelta(days=n), datetime.min.time(), TZ)
        for z, zone in enumerate(ZONES):
            for h in range(18, 26):  # 18:00–02:00, hourly reports ending at h + 1
                rows.append({"event_id": f"{zone}-{n}-{h}", "source": f"c_{zone}",
                             "zone_id": zone, "entries": 1000 - 30 * z + n,
                             "exits": 10, "interval_s": 3600,
                             "event_time": evening + timedelta(hours=h + 1)})
    wh.insert("footfall_observed", rows)
    yield wh
    drop(wh)


def _overlaps(labels: list) -> list[tuple[str, str]]:
    boxes = [(t.get_text(), t.get_window_extent()) for t in labels if t.get_text()]
    return [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:]
            if ba.overlaps(bb)]


def test_report_at_24_zones_shows_top_zones_and_others(many_zones_wh: EmbeddedWarehouse,
                                                      tmp_path: Path) -> None:
    end = FIRST + timedelta(days=NIGHTS - 1)
    result = night_economy_report(many_zones_wh, FIRST, end, tmp_path, timezone="Asia/Shanghai",
                                  progress=False)
    assert result.nights == NIGHTS
    nightly = pandas.read_csv(result.tables["nightly_footfall"])
    assert nightly["zone_id"].nunique() == 24  # the table keeps every zone
    # zone_00 has the most people (1000 − 30·z + n per hour)
    top = pandas.read_csv(result.tables["top_zones"])
    assert list(top["zone_id"][:3]) == ["zone_00", "zone_01", "zone_02"]
    fig = nightly_figure(pandas.read_csv(result.tables["nightly_footfall"],
                                         parse_dates=["night_date"]))
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == [f"others ({24 - TOP_ZONES} zones)", *ZONES[:TOP_ZONES][::-1]]
    bands = fig.axes[0].collections
    assert len(bands) == TOP_ZONES + 1
    # the pile's top on the first night is the district total: hand-summed, 24 zones × 8 h
    top_edge = bands[-1].get_paths()[0].vertices[:, 1].max()
    assert top_edge >= sum(8 * (1000 - 30 * z) for z in range(24))
    fig.tight_layout()
    fig.canvas.draw()
    ticks = fig.axes[0].get_xticklabels()
    assert 3 <= len([t for t in ticks if t.get_text()]) <= 12
    assert _overlaps(ticks) == []
    html = result.index.read_text(encoding="utf-8")
    assert "18:00–02:00 Asia/Shanghai local time" in html
