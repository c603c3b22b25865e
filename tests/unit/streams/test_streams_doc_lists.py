"""docs/streams.md's lists are complete: every metric the worker and the sink expose, with its
labels (an operator writes dashboards and alerts from that list; three metrics and four label
sets were missing), and every worker, sink and stream setting."""

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


def test_every_worker_sink_and_stream_setting_is_in_the_settings_section() -> None:
    import re

    from cityops.core.settings import Settings

    section = DOC.split("## Settings (streams worker section", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`CITYOPS_([A-Z0-9_]+)`", section))
    ours = {f.upper() for f in Settings.model_fields
            if f.startswith(("worker_", "sink_", "stream_"))}
    assert len(ours) > 30
    assert ours - named == set()
    assert {n for n in named if n.lower() not in Settings.model_fields} == set()
