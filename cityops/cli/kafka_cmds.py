"""``cityops kafka up | down | status | topics | backlog``: the real local broker, and how far
behind the deployment's consumer groups are on any cluster."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.table import Table

from cityops.cli.common import console, fail, settings_or_exit
from cityops.core.settings import Settings
from cityops.deploy.backlog import (
    GroupBacklog,
    OffsetReader,
    Progress,
    open_reader,
    progress,
    read_backlogs,
)
from cityops.deploy.exceptions import BrokerError
from cityops.deploy.kafka_local import LocalKafkaCluster, ensure_topics
from cityops.exceptions import CityopsError

T = TypeVar("T")

kafka_app = typer.Typer(help="Run a real local Apache Kafka broker (KRaft).", no_args_is_help=True)

BROKERS_OPTION = typer.Option(None, "--brokers", min=1, max=5,
                              help="Nodes of the local cluster (default "
                              "CITYOPS_KAFKA_LOCAL_BROKERS); node i on CITYOPS_KAFKA_PORT + 2i.")


@kafka_app.command("up")
def up(brokers: int | None = BROKERS_OPTION) -> None:
    """Fetch jars (once), format storage, start the broker(s), create topics."""
    cluster = LocalKafkaCluster(settings_or_exit(), brokers)
    try:
        seconds = cluster.up()
    except BrokerError as exc:
        fail(str(exc))
    if seconds == 0.0:
        console.print(f"already running at {cluster.bootstrap}")
        return
    for node in cluster.nodes:
        console.print(f"broker {node.node_id} ready at {node.bootstrap} (pid {node.pid()}, "
                      f"data {node.paths.root})", highlight=False)
    console.print(f"{cluster.size} broker(s) in {seconds:.1f} s; "
                  f"CITYOPS_KAFKA_BOOTSTRAP_SERVERS={cluster.bootstrap}", highlight=False)


@kafka_app.command("down")
def down(brokers: int | None = BROKERS_OPTION) -> None:
    """Stop the local broker(s) cleanly."""
    cluster = LocalKafkaCluster(settings_or_exit(), brokers)
    console.print("stopped" if cluster.down() else "not running")


@kafka_app.command("status")
def status(brokers: int | None = BROKERS_OPTION) -> None:
    """Say whether the broker(s) run, where, and whether they answer."""
    cluster = LocalKafkaCluster(settings_or_exit(), brokers)
    answering = True
    for node in cluster.nodes:
        st = node.status()
        state = "running" if st.running else "stopped"
        console.print(f"broker {node.node_id} {state}; pid {st.pid or '-'}; bootstrap "
                      f"{st.bootstrap}; answering {'yes' if st.answering else 'no'}")
        console.print(f"data {st.root}\njars {st.libs}", highlight=False)
        answering = answering and st.answering
    raise typer.Exit(0 if answering else 3)


@kafka_app.command("topics")
def topics() -> None:
    """Create every platform topic missing on the configured brokers (any cluster)."""
    settings = settings_or_exit()
    try:
        created = ensure_topics(settings)
    except CityopsError as exc:  # BrokerError, or the broker refused our credentials
        fail(f"cannot create topics on {settings.bootstrap_servers}: {exc}")
    console.print(f"{len(created)} topics created, {len(settings.all_topics)} expected: "
                  + ", ".join(settings.all_topics), highlight=False)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not shrinking"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _table(readings: list[GroupBacklog], moving: list[Progress] | None,
           show_unused: bool, prefix: str) -> Table:
    table = Table(title=None, show_edge=False, pad_edge=False)
    for name in ("group", "role", "members", "behind", "most behind"):
        table.add_column(name, justify="right" if name in ("members", "behind") else "left")
    if moving is not None:
        for name in ("done/s", "new/s", "caught up in"):
            table.add_column(name, justify="right")
    rates = {p.group.group: p for p in moving or []}
    for g in readings:
        if not g.used and not show_unused:
            continue
        worst = max(g.topics.items(), key=lambda kv: kv[1].behind, default=None)
        row = [g.group, g.role, str(g.members), f"{g.behind:,}" if g.used else "not used",
               f"{worst[0].removeprefix(prefix)} ({worst[1].behind:,})"
               if worst and worst[1].behind else "-"]
        if moving is not None:
            p = rates[g.group]
            row += [f"{p.committed_per_s:,.0f}", f"{p.arrived_per_s:,.0f}",
                    _duration(p.eta_s)]
        table.add_row(*row)
    return table


def _or_fail(ask: Callable[[], T]) -> T:
    try:
        return ask()
    except CityopsError as exc:  # unreachable, refused credentials, or an error reply
        fail(str(exc))


@kafka_app.command("backlog")
def backlog(
    watch: float = typer.Option(0.0, "--watch", min=0.0, metavar="SECONDS",
                                help="Read again every SECONDS and show each group's rate "
                                "and when it will have caught up, until Ctrl-C."),
    count: int = typer.Option(0, "--count", min=0,
                              help="With --watch: stop after this many readings (0: never)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per reading."),
    all_groups: bool = typer.Option(False, "--all",
                                    help="Also list the layouts' groups never used here."),
) -> None:
    """How far behind the workers' and the sink's consumer groups are (records after their
    committed offsets), read from the brokers; with --watch, how fast each catches up."""
    settings = settings_or_exit()
    with _or_fail(lambda: open_reader(settings)) as reader:  # one pair of clients for every reading
        _watch(settings, reader, watch, count, as_json, all_groups)


def _watch(settings: Settings, reader: OffsetReader, watch: float, count: int, as_json: bool,
           all_groups: bool) -> None:
    before = _or_fail(lambda: read_backlogs(settings, reader))
    at = time.monotonic()
    shown = 0

    def show(readings: list[GroupBacklog], moving: list[Progress] | None) -> None:
        if as_json:
            groups = [p.to_json() for p in moving] if moving is not None else [
                g.to_json() for g in readings]
            print(json.dumps({"groups": [g for g in groups if g["used"] or all_groups]}),
                  flush=True)
        else:
            console.print(_table(readings, moving, all_groups, f"{settings.topic_prefix}."))

    show(before, None)
    shown += 1
    try:
        while watch and (not count or shown < count):
            time.sleep(watch)
            now = _or_fail(lambda: read_backlogs(settings, reader))
            moved = time.monotonic()
            show(now, progress(before, now, moved - at))
            shown += 1
            before, at = now, moved
    except KeyboardInterrupt:
        return


def register(app: typer.Typer) -> None:
    app.add_typer(kafka_app, name="kafka")
