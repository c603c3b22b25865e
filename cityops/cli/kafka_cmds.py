"""``cityops kafka up | down | status``: the real local broker."""

from __future__ import annotations

import typer

from cityops.cli.common import console, fail, settings_or_exit
from cityops.deploy.exceptions import BrokerError
from cityops.deploy.kafka_local import LocalKafka, ensure_topics
from cityops.exceptions import CityopsError

kafka_app = typer.Typer(help="Run a real local Apache Kafka broker (KRaft).", no_args_is_help=True)


@kafka_app.command("up")
def up() -> None:
    """Fetch jars (once), format storage, start the broker, create topics."""
    broker = LocalKafka(settings_or_exit())
    try:
        seconds = broker.up()
    except BrokerError as exc:
        fail(str(exc))
    if seconds == 0.0:
        console.print(f"broker already running at {broker.bootstrap}")
    else:
        console.print(f"broker ready at {broker.bootstrap} in {seconds:.1f} s "
                      f"(pid {broker.pid()}, data {broker.paths.root})")


@kafka_app.command("down")
def down() -> None:
    """Stop the local broker cleanly."""
    broker = LocalKafka(settings_or_exit())
    console.print("broker stopped" if broker.down() else "broker was not running")


@kafka_app.command("status")
def status() -> None:
    """Say whether the broker runs, where, and whether it answers."""
    st = LocalKafka(settings_or_exit()).status()
    state = "running" if st.running else "stopped"
    console.print(f"broker {state}; pid {st.pid or '-'}; bootstrap {st.bootstrap}; "
                  f"answering {'yes' if st.answering else 'no'}")
    console.print(f"data {st.root}\njars {st.libs}", highlight=False)
    raise typer.Exit(0 if st.answering else 3)


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
