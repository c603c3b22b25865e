"""``CITYOPS_WORKER_STAGES``: a worker runs every step, or only validation, or only
aggregation with the alert engine; each kind reads as its own consumer group and all kinds
share the state logs. (A validation worker beside aggregation workers runs on a real broker
in ``tests/integration/streams/test_several_workers_one_sink.py``.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from cityops.core.registry import Registry
from cityops.core.settings import FEEDS, Settings, SettingsError, load_settings
from cityops.streams.worker import StreamsWorker


def _worker(settings: Settings, registry: Registry, tmp_path: Path,
            stages: str) -> StreamsWorker:
    s = settings.model_copy(update={"data_dir": tmp_path, "worker_stages": stages})
    return StreamsWorker(s, registry)


def _agents(worker: StreamsWorker) -> set[str]:
    return {agent.name.rsplit(".", 1)[-1] for agent in worker.app.agents.values()}


def test_each_kind_of_worker_reads_as_its_own_group_and_shares_the_state_logs(
        settings: Settings) -> None:
    every = settings.model_copy(update={"worker_stages": "all"})
    validation = settings.model_copy(update={"worker_stages": "validation"})
    aggregation = settings.model_copy(update={"worker_stages": "aggregation"})
    assert every.worker_group == every.worker_id  # as before the setting: nothing moves
    assert validation.worker_group == f"{settings.worker_id}.validation"
    assert aggregation.worker_group == f"{settings.worker_id}.aggregation"
    assert len({every.worker_group, validation.worker_group, aggregation.worker_group}) == 3
    assert validation.worker_id == aggregation.worker_id == every.worker_id


def test_a_worker_refuses_an_unknown_kind_of_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYOPS_WORKER_STAGES", "sink")
    with pytest.raises(SettingsError, match="CITYOPS_WORKER_STAGES"):
        load_settings()


def test_a_validation_worker_runs_no_aggregation_and_no_alert_engine(
        settings: Settings, registry: Registry, tmp_path: Path) -> None:
    w = _worker(settings, registry, tmp_path, "validation")
    assert set(w.validation) == set(FEEDS) and w.aggregation == {}
    assert _agents(w) == {f"validate-{f}" for f in FEEDS}
    assert w.app.conf.id == f"{settings.worker_id}.validation"
    assert all(stage.written is None for stage in w.validation.values())
    # its heartbeats and intake counts still reach the engine, through the same input
    assert w.alerting.input.get_topic_name() == f"{settings.worker_id}-alert-input"
    assert w.health()["aggregate"] == {}


def test_an_aggregation_worker_runs_the_alert_engine_and_no_validation(
        settings: Settings, registry: Registry, tmp_path: Path) -> None:
    w = _worker(settings, registry, tmp_path, "aggregation")
    assert set(w.aggregation) == set(FEEDS) and w.validation == {}
    assert _agents(w) == {f"aggregate-{f}" for f in FEEDS} | {"alerts-engine"}
    assert w.app.conf.id == f"{settings.worker_id}.aggregation"
    assert w.health()["validate"] == {}


def test_a_worker_of_every_step_hands_its_clean_events_to_its_aggregation(
        settings: Settings, registry: Registry, tmp_path: Path) -> None:
    w = _worker(settings, registry, tmp_path, "all")
    assert set(w.validation) == set(w.aggregation) == set(FEEDS)
    assert _agents(w) == ({f"validate-{f}" for f in FEEDS} | {f"aggregate-{f}" for f in FEEDS}
                          | {"alerts-engine"})
    assert w.app.conf.id == settings.worker_id
    for feed in FEEDS:
        assert w.validation[feed].written is w.aggregation[feed].written is not None


def test_the_worker_command_refuses_an_unknown_kind_of_step_before_starting() -> None:
    from typer.testing import CliRunner

    from cityops.cli.main import app

    result = CliRunner().invoke(app, ["worker", "--stages", "sink", "--no-supervise"])
    assert result.exit_code == 2
    assert "all, validation or aggregation" in result.output


def test_only_a_worker_that_may_run_the_engine_delivers_webhooks(
        settings: Settings, registry: Registry, tmp_path: Path) -> None:
    from pydantic import SecretStr

    hooked = settings.model_copy(update={
        "alert_webhook_urls": [SecretStr("https://hooks.example.org/cityops")]})
    assert _worker(hooked, registry, tmp_path, "validation").webhooks is None
    assert _worker(hooked, registry, tmp_path, "aggregation").webhooks is not None
    assert _worker(hooked, registry, tmp_path, "all").webhooks is not None
