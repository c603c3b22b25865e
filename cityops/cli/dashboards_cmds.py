"""``cityops dashboards build|check|push`` and ``cityops board``."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from cityops.cli.common import (
    console,
    err_console,
    fail,
    registry_or_exit,
    settings_or_exit,
    when_or_exit,
)
from cityops.exceptions import CityopsError

dashboards_app = typer.Typer(help="Grafana boards and alert rules as code.",
                             no_args_is_help=True)
DEFAULT_OUT = Path("deploy/grafana")
#: history that proves granule skipping of long-range queries (monthly partitions)
PRUNING_DAYS = 90


def _bundle() -> tuple[Any, Any, Any]:
    from cityops.dashboards.provisioning import generate
    from cityops.streams.alerts.rules import load_rules

    settings = settings_or_exit()
    registry = registry_or_exit(settings)
    try:
        rules = load_rules(settings.alert_rules)
    except CityopsError as exc:
        fail(str(exc))
    return settings, registry, (generate(settings, registry, rules), rules)


@dashboards_app.command("build")
def build_cmd(out: Path = typer.Option(DEFAULT_OUT, "--out", help="Folder for the JSON and "
                                       "YAML (compose mounts deploy/grafana).")) -> None:
    """Write the board JSON and the provisioning YAML (datasource, boards, alerting)."""
    from cityops.dashboards.provisioning import write

    _settings, _registry, (bundle, _rules) = _bundle()
    paths = write(bundle, out)
    console.print(f"wrote {len(paths)} files under {out}: {len(bundle.boards)} boards, "
                  f"{sum(len(b.panels) for b in bundle.boards)} panels, {len(bundle.rules)} "
                  "alert rules", highlight=False)


@dashboards_app.command("check")
def check_cmd(
    url: str | None = typer.Option(None, "--url", help="Check against this warehouse as it is "
                                   "(default: a scratch embedded warehouse filled with "
                                   "simulated data)."),
    days: int = typer.Option(90, "--days", help="Days of simulated history (pruning check)."),
) -> None:
    """Run every board and alert query on the real ClickHouse engine; prove the contracts."""
    from cityops.dashboards import check, fixtures
    from cityops.warehouse.backend import connect

    settings, registry, (bundle, rules) = _bundle()
    if url:
        wh = connect(url, settings=settings)
        end = datetime.now(settings.tz)
    else:
        from cityops.warehouse.migrate import migrate

        path = (settings.data_dir / "dashboards-check").resolve()
        wh = connect(f"chdb://{path}?database=boards", settings=settings)
        wh.execute("DROP DATABASE IF EXISTS boards SYNC")
        wh.close()
        wh = connect(f"chdb://{path}?database=boards", settings=settings)
        migrate(wh, timezone=settings.timezone, raw_ttl_days=0, registry=registry)
        end = fixtures.default_end(settings.timezone)
        t0 = time.perf_counter()
        with console.status(f"simulating {days} days of history and 6 live hours …"):
            n = fixtures.fill(wh, registry, rules, timezone=settings.timezone, end=end,
                              raw_days=days, live_hours=6)
        err_console.print(f"  warehouse {path}: {n} rows in {time.perf_counter() - t0:.0f} s")
    try:
        report = check.run_all(wh, bundle, settings.timezone, end,
                               pruning=bool(url) or days >= PRUNING_DAYS)
        if not url and days < PRUNING_DAYS:
            err_console.print(f"  granule pruning not checked: it needs {PRUNING_DAYS} days "
                              "of history (--days)")
    finally:
        wh.close()
    if not url:
        _replay_alerts(settings, registry, rules, bundle, report)
    for p in report.problems:
        console.print(f"[red]✗[/red] {p}", highlight=False)
    if report.problems:
        fail(f"{len(report.problems)} of {report.checked} checks failed", code=1)
    console.print(f"[green]✓[/green] {report.checked} checks passed: {len(bundle.boards)} "
                  f"boards, {sum(len(b.panels) for b in bundle.boards)} panels, "
                  f"{len(bundle.rules)} alert rules", highlight=False)


def _replay_alerts(settings: Any, registry: Any, rules: Any, bundle: Any, report: Any) -> None:
    """Grafana's evaluation of the alert rules against the stream engine, on scenarios."""
    from cityops.dashboards import evaluate, fixtures
    from cityops.warehouse.backend import connect
    from cityops.warehouse.migrate import migrate

    path = (settings.data_dir / "dashboards-check").resolve()
    wh = connect(f"chdb://{path}?database=boards_alerts", settings=settings)
    try:
        wh.execute("DROP DATABASE IF EXISTS boards_alerts SYNC")
        wh.close()
        wh = connect(f"chdb://{path}?database=boards_alerts", settings=settings)
        migrate(wh, timezone=settings.timezone, raw_ttl_days=0, registry=registry)
        start = fixtures.default_end(settings.timezone)
        with console.status("replaying alert scenarios through Grafana's rules and the engine"):
            results = evaluate.replay_all(wh, rules, registry, bundle.rules, start, settings.tz,
                                          interval_s=max(10, int(settings.alert_tick_s)))
    finally:
        wh.close()
    for rule_id, c in results.items():
        report.add(not c.mismatches, f"alert {rule_id}: Grafana and the stream engine disagree "
                   f"at {len(c.mismatches)} of {c.instants} instants: {c.mismatches[:2]}")
        for uid, n in c.fired.items():
            report.add(n > 0, f"alert {uid}: never fired in its scenario")
        err_console.print(f"  alert {rule_id}: {c.instants} evaluations, firing "
                          f"{dict(c.fired)}, agreement {'exact' if not c.mismatches else 'NO'}")


@dashboards_app.command("push")
def push_cmd(
    url: str | None = typer.Option(None, "--url", help="Grafana URL (default "
                                   "CITYOPS_GRAFANA_URL)."),
    token: str | None = typer.Option(None, "--token", help="Service-account token (default "
                                     "CITYOPS_GRAFANA_TOKEN)."),
    clickhouse: str = typer.Option("clickhouse:9000/cityops", "--clickhouse",
                                   help="host:port/database Grafana uses to reach ClickHouse."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would change; change "
                                 "nothing."),
) -> None:
    """Create or update the folder, datasource, boards and alerting in a Grafana (idempotent)."""
    from cityops.dashboards import push

    settings, _registry, (bundle, _rules) = _bundle()
    target_url = (url or settings.grafana_url).rstrip("/")
    secret = token or settings.grafana_token.get_secret_value()
    if not secret:
        fail("no Grafana token: give --token or set CITYOPS_GRAFANA_TOKEN")
    hostport, _, database = clickhouse.partition("/")
    host, _, port = hostport.partition(":")
    ds = push.datasource_body(host, int(port or 9000), database or "cityops",
                              settings.grafana_clickhouse_user,
                              settings.grafana_clickhouse_password.get_secret_value())
    try:
        target = push.GrafanaTarget(target_url, secret)
        actions = push.push(target, push.wanted(bundle, ds), dry_run=dry_run,
                            report=lambda a: console.print(a.line(), highlight=False)
                            if a.verb != "unchanged" else None)
    except CityopsError as exc:
        fail(str(exc), code=1)
    changed = sum(a.verb != "unchanged" for a in actions)
    console.print(f"{target_url}: {changed} changed, {len(actions) - changed} unchanged"
                  + (" (dry run)" if dry_run else ""), highlight=False)


def board_runner(settings: Any) -> Any:
    """The worker's read-only SQL endpoint, or the warehouse itself when no worker holds it."""
    from cityops.cli.warehouse_cmds import remote_sql_url
    from cityops.dashboards.terminal import WorkerSql

    endpoint = remote_sql_url(settings)
    if endpoint:
        return WorkerSql(endpoint, settings.worker_token.get_secret_value())
    from cityops.warehouse.backend import connect

    return connect(settings.effective_warehouse_url, settings=settings)


def board_cmd(
    every: float = typer.Option(0.0, "--every", help="Seconds between refreshes (default "
                                "CITYOPS_BOARD_REFRESH_S)."),
    once: bool = typer.Option(False, "--once", help="Draw one frame and exit."),
    at: str | None = typer.Option(None, "--at", help="Board time (ISO-8601), e.g. to look at "
                                  "a replayed day; default now."),
) -> None:
    """The command-centre board in the terminal: the overview board's own queries, live."""
    from rich.live import Live

    from cityops.dashboards.boards import overview
    from cityops.dashboards.terminal import frame
    from cityops.streams.alerts.rules import load_rules

    settings = settings_or_exit()
    registry = registry_or_exit(settings)
    rules = load_rules(settings.alert_rules)
    board = overview(rules, registry, f"{settings.board_refresh_s}s",
                     settings.incident_expire_after_s)
    runner = board_runner(settings)

    # a time without an offset is the district's, as everywhere in the CLI
    when = when_or_exit(at, settings.tz, "--at")

    def now() -> datetime:
        return when.astimezone(settings.tz) if when is not None else datetime.now(settings.tz)

    if once:
        console.print(frame(runner, board, now()))
        return
    period = every or settings.board_refresh_s
    try:
        with Live(frame(runner, board, now()), console=console, refresh_per_second=1,
                  screen=False) as live:
            while True:
                time.sleep(period)
                live.update(frame(runner, board, now()))
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    """Add ``dashboards`` and ``board``."""
    app.add_typer(dashboards_app, name="dashboards")
    app.command("board")(board_cmd)
