"""Every metric the worker and the sink expose is in docs/streams.md with its labels: an
operator writes dashboards and alerts from that list (three metrics and four label sets were
missing from it)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.metrics import Counter, MetricWrapperBase

from cityops.streams import metrics

DOC = (Path(__file__).resolve().parents[3] / "docs" / "streams.md").read_text(encoding="utf-8")


def _documented_form(metric: MetricWrapperBase) -> str:
    name = metric._name + ("_total" if isinstance(metric, Counter) else "")
    labels = metric._labelnames
    return f"`{name}{{{','.join(labels)}}}`" if labels else f"`{name}`"


def test_every_metric_is_documented_with_its_labels() -> None:
    row = next(line for line in DOC.splitlines() if line.startswith("| `GET /metrics` |"))
    found = [v for v in vars(metrics).values() if isinstance(v, MetricWrapperBase)]
    assert len(found) >= 20
    missing = [_documented_form(m) for m in found if _documented_form(m) not in row]
    assert missing == []
    assert row.count("`cityops_") == len(found), "the row names a metric that does not exist"
