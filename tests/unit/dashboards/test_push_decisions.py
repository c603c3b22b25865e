"""Push decisions as plain code: create what is missing, update what differs, leave the rest.

No Grafana can run here; the network layer is thin and only its failure to connect is
exercised (against a closed local port).
"""

from __future__ import annotations

import copy
import socket

import pytest

from cityops.dashboards.exceptions import GrafanaPushError
from cityops.dashboards.provisioning import Bundle
from cityops.dashboards.push import (
    Action,
    GrafanaTarget,
    datasource_body,
    decide,
    push,
    same,
    wanted,
)


class StoreTarget:
    """Our own store with the target's two methods: what was applied is what is current."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict] = {}
        self.applied: list[Action] = []

    def current(self, kind: str, name: str) -> dict | None:
        got = self.objects.get((kind, name))
        if got is None:
            return None
        served = copy.deepcopy(got)
        served.pop("secureJsonData", None)  # Grafana never returns secrets
        served.update({"id": 7, "version": 3})  # and adds its own fields
        return served

    def apply(self, action: Action) -> None:
        self.applied.append(action)
        self.objects[(action.kind, action.name)] = copy.deepcopy(action.body)


def _items(bundle: Bundle) -> list:
    return wanted(bundle, datasource_body("clickhouse", 9000, "cityops", "reader", "s3cret"))


def test_first_push_creates_everything_second_changes_nothing(bundle: Bundle) -> None:
    target = StoreTarget()
    first = push(target, _items(bundle))  # type: ignore[arg-type]
    assert {a.verb for a in first} == {"create"}
    assert [a.kind for a in first][:2] == ["folder", "datasource"]
    assert sum(a.kind == "dashboard" for a in first) == 6
    assert sum(a.kind == "alert-rule" for a in first) == len(bundle.rules)
    second = push(target, _items(bundle))  # type: ignore[arg-type]
    assert {a.verb for a in second} == {"unchanged"}
    assert len(target.applied) == len(first)


def test_a_changed_board_is_updated_alone(bundle: Bundle) -> None:
    target = StoreTarget()
    push(target, _items(bundle))  # type: ignore[arg-type]
    items = _items(bundle)
    for kind, name, body in items:
        if kind == "dashboard" and name == "cityops-air":
            body["title"] += " (edited)"
    actions = push(target, items)  # type: ignore[arg-type]
    assert [(a.kind, a.name) for a in actions if a.verb == "update"] == [
        ("dashboard", "cityops-air")]


def test_dry_run_applies_nothing(bundle: Bundle) -> None:
    target = StoreTarget()
    actions = push(target, _items(bundle), dry_run=True)  # type: ignore[arg-type]
    assert actions and not target.applied


def test_sameness_ignores_server_fields_and_unreadable_secrets() -> None:
    want = {"uid": "x", "title": "t", "secureJsonData": {"password": "p"}}
    assert same({"uid": "x", "title": "t", "id": 3, "version": 9}, want)
    assert not same({"uid": "x", "title": "other"}, want)
    assert decide("folder", "x", None, want).verb == "create"
    assert decide("folder", "x", {"uid": "x", "title": "t"}, want).verb == "unchanged"


def test_an_unreachable_grafana_is_one_clear_error() -> None:
    with socket.socket() as s:
        # bound and held, never listening: connections are refused, and no other process
        # can take the port meanwhile (a port closed again was once taken during a full run)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        target = GrafanaTarget(f"http://127.0.0.1:{port}", "token", timeout_s=2)
        with pytest.raises(GrafanaPushError, match="cannot reach Grafana"):
            target.current("folder", "cityops")


def test_a_password_in_the_grafana_url_is_masked_in_errors() -> None:
    """``http://admin:<password>@host`` is a way to log in that requests takes; the error
    printed the URL whole."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        target = GrafanaTarget(f"http://admin:s3cret-pw@127.0.0.1:{port}", "token",
                               timeout_s=2)
        with pytest.raises(GrafanaPushError) as caught:
            target.current("folder", "cityops")
    assert "s3cret-pw" not in str(caught.value)
    assert f"http://admin:**********@127.0.0.1:{port}" in str(caught.value)


def test_push_without_a_token_says_so() -> None:
    from typer.testing import CliRunner

    from cityops.cli.main import app

    result = CliRunner().invoke(app, ["dashboards", "push", "--url", "http://127.0.0.1:9"],
                                env={"CITYOPS_GRAFANA_TOKEN": ""})
    assert result.exit_code == 2
    assert "no Grafana token" in result.output
