"""``cityops kafka up | down | status``: the real local broker."""

from __future__ import annotations

import typer

from cityops.cli.common import console, fail, settings_or_exit
from cityops.deploy.exceptions import BrokerError
from cityops.deploy.kafka_local import LocalKafkaCluster, ensure_topics
from cityops.exceptions import CityopsError

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


def register(app: typer.Typer) -> None:
    app.add_typer(kafka_app, name="kafka")
