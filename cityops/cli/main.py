"""Entry point of the ``cityops`` command.

Each area owns one module in this package exposing ``register(app)``; the CLI sits beside
the data flow (like ``deploy/``), so it may import from every area.
"""

from __future__ import annotations

import contextlib
import importlib

import typer

from cityops import __version__

app = typer.Typer(
    name="cityops",
    help="Streaming city-operations platform for Yuzhong district, Chongqing.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

#: Modules that add subcommands, in help order.
COMMAND_MODULES = (
    "cityops.cli.core_cmds",  # validate, settings, registry
    "cityops.cli.kafka_cmds",  # kafka up | down | status
    "cityops.cli.ingest_cmds",  # simulate, replay, intake
    "cityops.cli.warehouse_cmds",  # warehouse migrate|status|tables, sql, report
    "cityops.cli.streams_cmds",  # worker, aqi, alerts
    "cityops.cli.sink_cmd",  # sink: the warehouse sink as its own process
    "cityops.cli.keys_cmds",  # keys add | list | revoke
    "cityops.cli.dashboards_cmds",  # dashboards build|check|push, board
    "cityops.cli.run_cmd",  # run: the whole local pipeline
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cityops {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """cityops: feeds → Kafka → Faust → ClickHouse → boards and alerts."""
    from cityops.core.exceptions import SettingsError
    from cityops.core.logs import configure_logging
    from cityops.core.settings import load_settings

    # a bad setting is reported by each command itself, naming the variable
    with contextlib.suppress(SettingsError):
        configure_logging(load_settings())


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:  # pragma: no cover - console entry
    app()
