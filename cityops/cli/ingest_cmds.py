"""Ingest subcommands: ``simulate``, ``replay``, ``intake``."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from cityops.cli.common import (
    console,
    fail,
    registry_or_exit,
    settings_or_exit,
    when_or_exit,
)
from cityops.core.feeds import ValidationContext
from cityops.core.settings import FEEDS
from cityops.exceptions import CityopsError


def _stats_table(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False)
    for k, v in rows.items():
        table.add_row(k, str(v))
    return table


def simulate(
    feeds: str = typer.Option(",".join(FEEDS), "--feeds", help="Comma-separated feeds."),
    rate: float = typer.Option(0.0, "--rate", help="Target events/s (a cap with --speed or "
                               "--start; alone: the recent past replayed at this rate)."),
    duration: float = typer.Option(0.0, "--duration", help="Wall-clock seconds to run "
                                   "(0 = until the range ends / Ctrl-C)."),
    speed: float = typer.Option(0.0, "--speed", help="Simulated seconds per wall second "
                                "(1 real time, 60 = an hour a minute, 0 = as fast as possible "
                                "with --start/--end, else real time)."),
    start: str = typer.Option("", "--start", help="Simulated start, ISO-8601 (local time if "
                              "no offset); default: now (real time) or the recent past."),
    end: str = typer.Option("", "--end", help="Simulated end (exclusive), ISO-8601."),
    seed: int = typer.Option(-1, "--seed", help="Random seed (default CITYOPS_INGEST_SEED)."),
    faults: str = typer.Option("", "--faults", help="e.g. dup=0.01,late=0.005,ooo=0.02,"
                               "malformed=0.01,dead=2,skew=600 — or 'all'."),
    out: Path | None = typer.Option(None, "--out", help="Write JSON lines here instead of "
                                    "producing to Kafka ('-' for stdout)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Simulate the district's feeds into Kafka (raw topics) or a JSON-lines file."""
    from cityops.ingest.producer import FeedProducer, interrupt_guard
    from cityops.ingest.run import events_per_sim_second, plan_range, run
    from cityops.ingest.simulate import FaultPlan, Simulation

    settings = settings_or_exit()
    registry = registry_or_exit(settings)
    tz = settings.tz
    chosen = [f.strip() for f in feeds.split(",") if f.strip()]
    try:
        plan = FaultPlan.parse(faults)
        probe = Simulation(registry, seed=0, start=datetime.now(tz), end=None, feeds=chosen)
        first, last, pace = plan_range(
            now=datetime.now(tz), start=when_or_exit(start, tz, "--start"),
            end=when_or_exit(end, tz, "--end"),
            speed=speed or None, duration_s=duration or None, rate=rate or None,
            events_per_s=events_per_sim_second(probe))
        if first is not None and last is None and not duration and pace is None:
            fail("--start without --end needs --duration or --speed")
        sim = Simulation(registry, seed=settings.ingest_seed if seed < 0 else seed, start=first,
                         end=last, feeds=chosen, faults=plan)
    except CityopsError as exc:
        fail(str(exc))
    mode = (f"rate-driven, {rate:g} events/s" if rate else "as fast as possible") \
        if pace is None else (
        "real time" if pace == 1 else f"accelerated ×{pace:g}")
    console.print(f"simulating {', '.join(sim.feeds)} from {first.isoformat()} to "
                  f"{last.isoformat() if last else '(open end)'}, {mode}, seed {sim.seed}"
                  + (f", faults {plan}" if plan.any else ""), highlight=False)
    stop = threading.Event()
    bar = None
    if not quiet:
        from tqdm import tqdm

        bar = tqdm(unit="ev", desc="events", mininterval=0.5)
    producer = None
    handle = None
    try:
        if out is not None:
            import sys

            handle = sys.stdout.buffer if str(out) == "-" else out.open("wb")

            def sink(rec: Any) -> None:
                handle.write(rec.value + b"\n")
        else:
            try:
                producer = FeedProducer(settings, client_id="cityops-simulate")
            except CityopsError as exc:
                fail(str(exc))

            def sink(rec: Any) -> None:
                producer.send(settings.raw_topic(rec.feed), rec.value, rec.key)
        with interrupt_guard(stop):
            try:
                summary = run(sim, sink, speed=pace, rate=rate or None,
                              duration_s=duration or None, stop=stop, progress=bar)
            except CityopsError as exc:
                fail(str(exc), code=1)
    finally:
        if bar is not None:
            bar.close()
        if handle is not None and str(out) != "-":
            handle.close()
        stats = producer.close() if producer is not None else None
    console.print(_stats_table("simulation", {**summary.as_dict(), "seed": sim.seed}))
    if stats is not None:
        console.print(_stats_table("producer", stats.as_dict()))
        if stats.failed:
            raise typer.Exit(1)


def replay(
    file: Path = typer.Argument(..., help="CSV, JSON-lines or Parquet file."),
    feed: str = typer.Option(..., "--feed", "-f", help=f"One of: {', '.join(FEEDS)}."),
    fmt: str = typer.Option("", "--format", help="jsonl | csv | parquet (default: suffix)."),
    mapping: list[str] = typer.Option(None, "--map", help="FIELD=COLUMN (repeatable or "
                                      "comma-separated): contract field from a file column."),
    constants: list[str] = typer.Option(None, "--set", help="FIELD=VALUE for fields the file "
                                        "lacks (e.g. zone_id=jfb_square)."),
    encoding: str = typer.Option("utf-8", "--encoding", help="File encoding (e.g. gbk)."),
    rebase: str = typer.Option("", "--rebase", help="Shift event times so the first lands "
                               "here: ISO-8601 or 'now'."),
    naive_tz: str = typer.Option("", "--naive-tz", help="Time zone for timestamps without "
                                 "an offset (default: reject them)."),
    speed: float = typer.Option(0.0, "--speed", help="Pace by event time ÷ speed (0 = as "
                                "fast as possible)."),
    rate: float = typer.Option(0.0, "--rate", help="Cap on events/s (0 = no cap)."),
    topic: str = typer.Option("", "--topic", help="Override the target topic."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Replay a recorded file into a feed's raw topic; refused records go to the DLQ."""
    from cityops.ingest.producer import FeedProducer, interrupt_guard
    from cityops.ingest.replay import parse_assignments, replay_file
    from cityops.ingest.retention import file_notice

    settings = settings_or_exit()
    registry = registry_or_exit(settings)
    if feed not in FEEDS:
        fail(f"unknown feed {feed!r} (allowed: {', '.join(FEEDS)})")
    if not file.is_file():
        fail(f"{file}: no such file")
    try:
        zone = ZoneInfo(naive_tz) if naive_tz else None
    except (KeyError, ValueError):
        fail(f"--naive-tz {naive_tz!r} is not an IANA time zone")
    ctx = ValidationContext.from_settings(settings, registry)
    stop = threading.Event()
    try:
        maps = parse_assignments(mapping, "--map")
        sets = parse_assignments(constants, "--set")
        producer = FeedProducer(settings, client_id="cityops-replay", rate=rate or None)
    except CityopsError as exc:
        fail(str(exc))
    if not rebase:  # re-based records are recent: nothing to check
        try:
            notice = file_notice(file, feed, settings, ctx, fmt=fmt or None, mapping=maps,
                                 constants=sets, encoding=encoding, naive_tz=zone)
        except CityopsError as exc:
            producer.close()
            fail(str(exc))
        if (text := notice.message()) is not None:
            console.print(f"[yellow]{text}[/yellow]", highlight=False)
    try:
        with interrupt_guard(stop):
            summary = replay_file(
                file, feed, producer, settings, ctx, fmt=fmt or None, mapping=maps,
                constants=sets, encoding=encoding,
                rebase_to=when_or_exit(rebase, settings.tz, "--rebase"), naive_tz=zone,
                speed=speed or None, topic=topic or None, progress=not quiet, stop=stop)
    except CityopsError as exc:
        producer.close()
        fail(str(exc))
    stats = producer.close()
    table = Table(title=f"replay {file.name} → {topic or settings.raw_topic(feed)}")
    table.add_column("")
    table.add_column("records", justify="right")
    table.add_row("read", str(summary.read))
    table.add_row("sent", str(summary.sent))
    for reason, n in summary.rejected.most_common():
        table.add_row(f"rejected: {reason}", str(n))
    table.add_row("dead-lettered", str(summary.dead_lettered))
    table.add_row("delivery failed", str(stats.failed))
    table.add_row("seconds", f"{summary.seconds:.2f}")
    console.print(table)
    raise typer.Exit(1 if stats.failed or summary.interrupted else 0)


def intake(
    host: str = typer.Option("", "--host", help="Bind address (default CITYOPS_INTAKE_HOST)."),
    port: int = typer.Option(0, "--port", help="Port (default CITYOPS_INTAKE_PORT)."),
) -> None:
    """Serve the HTTP intake for sensor vendors and FIWARE NGSI-LD entities."""
    import uvicorn

    from cityops.core.keys import Gate, KeyStore
    from cityops.ingest.intake import create_app
    from cityops.ingest.producer import FeedProducer

    settings = settings_or_exit()
    registry = registry_or_exit(settings)
    bind, bind_port = host or settings.intake_host, port or settings.intake_port
    gate = Gate(KeyStore(settings.keys_path), "intake", bind)
    try:
        gate.check_startup("the intake")
        producer = FeedProducer(settings, client_id="cityops-intake")
    except CityopsError as exc:
        fail(str(exc))
    app = create_app(settings, registry, producer, gate)
    lock = ("API keys required" if gate.enforced
            else "open to this machine only: no intake keys yet (`cityops keys add`)")
    console.print(f"intake on http://{bind}:{bind_port} → {settings.bootstrap_servers}; {lock} "
                  f"(started {datetime.now(UTC).isoformat(timespec='seconds')})")
    try:
        uvicorn.run(app, host=bind, port=bind_port, log_level="warning")
    finally:
        stats = producer.close()
        console.print(_stats_table("producer", stats.as_dict()))


def register(app: typer.Typer) -> None:
    """Add this module's subcommands to the root app."""
    app.command("simulate")(simulate)
    app.command("replay")(replay)
    app.command("intake")(intake)
