"""The car parks' trend: the in-order fast path gives what merging and sorting every point did.

``ParkingAggregator.add`` appends a car park's newest point instead of filtering, sorting and
filtering its window again at every report, and ``least_squares_slope`` sums in two loops
instead of four generators. Both must give the same floats, states and outcomes as the code
they replaced, kept here as the reference, for reports in order, again, out of order and late.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from cityops.core.feeds import ParkingObserved
from cityops.streams.aggregators import ParkingAggregator, least_squares_slope

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def reference_slope(points: list[tuple[float, float]]) -> float | None:
    """``least_squares_slope`` as it was: four generator sums."""
    n = len(points)
    if n < 2:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


class ReferencePoints:
    """The points and regression window of ``ParkingAggregator.add`` as they were: every
    report filtered the car park's points, appended, sorted and filtered them again."""

    def __init__(self, trend_window_s: float) -> None:
        self.trend_window_s = trend_window_s
        self.points: list[list[float]] = []

    def add(self, ts: float, occupied: float) -> tuple[float | None, float | None]:
        """(lateness, slope): the lateness when refused, else None and the slope."""
        points = [p for p in self.points if p[0] != ts]
        points.append([ts, occupied])
        points.sort()
        newest = points[-1][0]
        points = [p for p in points if p[0] >= newest - self.trend_window_s]
        self.points = points
        if ts < newest - self.trend_window_s:
            return newest - self.trend_window_s - ts, None
        window = [(p[0] / 60.0, p[1]) for p in points
                  if ts - self.trend_window_s <= p[0] <= ts]
        return None, reference_slope(window)


def report(ts: float, occupied: int) -> ParkingObserved:
    return ParkingObserved(event_id=f"p{ts}", source="cp_wfc", carpark_id="cp_wfc",
                           event_time=datetime.fromtimestamp(ts, UTC), capacity=400,
                           occupied=occupied)


def test_the_slope_is_the_float_the_generator_sums_gave() -> None:
    rng = random.Random(7)
    base = T0.timestamp() / 60.0
    for _ in range(3000):
        n = rng.randint(0, 14)
        points = [(base + rng.uniform(0, 10), float(rng.randint(0, 400))) for _ in range(n)]
        if n and rng.random() < 0.1:
            points = [(points[0][0], y) for _, y in points]  # one x: no slope
        assert least_squares_slope(points) == reference_slope(points)


def test_a_car_park_in_order_again_and_late_gives_what_sorting_every_report_gave() -> None:
    rng = random.Random(11)
    for trial in range(40):
        agg = ParkingAggregator(trend_window_s=600)
        ref = ReferencePoints(600)
        ts, occupied = T0.timestamp(), 200
        sent: list[float] = []
        for _ in range(120):
            roll = rng.random()
            if sent and roll < 0.1:
                at = rng.choice(sent)  # the same report time again
            elif sent and roll < 0.2:
                at = sent[-1] - rng.uniform(1, 900)  # out of order; beyond 600 s: late
            else:
                ts += rng.choice([30.0, 60.0, 60.0, 61.5, 120.0, 700.0])
                at = ts
            sent.append(at)
            occupied = max(0, min(400, occupied + rng.randint(-12, 12)))
            outcome = agg.add(report(at, occupied), NOW)
            lateness, slope = ref.add(datetime.fromtimestamp(at, UTC).timestamp(),
                                      float(occupied))
            assert agg.to_state("cp_wfc") == {"points": ref.points}, trial
            if lateness is not None:
                assert (outcome.accepted, outcome.lateness_s) == (False, lateness)
                continue
            assert outcome.accepted
            state: Any = outcome.records[0]
            assert state.trend_per_min == (0.0 if slope is None else round(slope, 4))


def test_a_restored_car_park_appends_to_its_points() -> None:
    agg = ParkingAggregator(trend_window_s=600)
    for i in range(5):
        agg.add(report(T0.timestamp() + 60 * i, 100 + 6 * i), NOW)
    restored = ParkingAggregator(trend_window_s=600)
    restored.from_state("cp_wfc", agg.to_state("cp_wfc"))
    nxt = report((T0 + timedelta(minutes=5)).timestamp(), 130)
    assert restored.add(nxt, NOW).records[0].trend_per_min == 6.0
    assert agg.add(nxt, NOW).records[0].trend_per_min == 6.0
    assert restored.to_state("cp_wfc") == agg.to_state("cp_wfc")
