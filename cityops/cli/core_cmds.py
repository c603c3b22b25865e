"""Core subcommands: ``validate`` a JSON-lines file, show ``settings`` and the ``registry``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer
from pydantic import SecretStr
from rich.table import Table

from cityops import compiled
from cityops.cli.common import console, fail, registry_or_exit, settings_or_exit
from cityops.compiled import read_enabled
from cityops.core.contract import Rejection, decode_event
from cityops.core.feeds import FEED_MODELS, ValidationContext
from cityops.core.secrets import redact_url
from cityops.core.settings import Settings


def _read_lines(path: Path) -> list[bytes]:
    """The file's lines as bytes; a missing or binary file is a one-line error."""
    if not path.exists():
        fail(f"{path}: no such file")
    if not path.is_file():
        fail(f"{path}: not a regular file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        fail(f"{path}: cannot read ({exc.strerror})")
    if b"\x00" in data[:65536]:
        fail(f"{path}: not a text file (contains NUL bytes); expected JSON lines")
    return data.splitlines()


def validate(
    file: Path = typer.Argument(..., help="JSON-lines file, one event per line."),
    feed: str = typer.Option(..., "--feed", "-f", help=f"One of: {', '.join(FEED_MODELS)}."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the summary."),
) -> None:
    """Check every line of FILE against the feed contract; exit 0 only if all are valid."""
    if feed not in FEED_MODELS:
        fail(f"unknown feed {feed!r} (allowed: {', '.join(FEED_MODELS)})")
    settings = settings_or_exit()
    ctx = ValidationContext.from_settings(settings, registry_or_exit(settings))
    reasons: Counter[str] = Counter()
    total = 0
    for lineno, line in enumerate(_read_lines(file), start=1):
        if not line.strip():
            continue
        total += 1
        result = decode_event(feed, line, ctx, max_bytes=settings.max_message_bytes)
        if isinstance(result, Rejection):
            reasons[result.reason] += 1
            if not quiet:
                console.print(f"{file}:{lineno}: {result}", highlight=False, markup=False)
    bad = sum(reasons.values())
    console.print(f"{total} lines, {total - bad} valid, {bad} invalid", highlight=False)
    for reason, n in reasons.most_common():
        console.print(f"  {reason}: {n}", highlight=False)
    if total == 0:
        fail(f"{file}: no events found", code=1)
    raise typer.Exit(1 if bad else 0)


def _shown(value: object) -> str:
    """A setting as the table shows it: a secret only says whether it is set."""
    if isinstance(value, SecretStr):
        return "(set, hidden)" if value.get_secret_value() else ""
    if isinstance(value, list) and value and isinstance(value[0], SecretStr):
        return f"({len(value)} set, hidden)"
    if isinstance(value, str) and "://" in value:  # a password written into any URL
        return redact_url(value)
    return str(value)


def show_settings() -> None:
    """Print the effective configuration (secrets masked)."""
    settings = settings_or_exit()
    table = Table("variable", "value", "meaning")
    for name, fld in Settings.model_fields.items():
        desc = (fld.description or "").split(":", 1)[-1].strip()
        table.add_row(f"CITYOPS_{name.upper()}", _shown(getattr(settings, name)), desc)
    table.add_row("CITYOPS_COMPILED", _shown(read_enabled()[0]),
                  "hot modules compiled when built (read at import: cityops.compiled)")
    table.add_row("(hot modules)", compiled.STATUS.reason, "compiled or from source")
    table.add_row("(bootstrap)", settings.bootstrap_servers, "brokers clients use")
    table.add_row("(warehouse)", settings.effective_warehouse_url, "warehouse in use")
    console.print(table)


def show_registry() -> None:
    """Summarise the site registry in use (validating it on the way)."""
    settings = settings_or_exit()
    reg = registry_or_exit(settings)
    m = reg.manifest
    console.print(f"{m.district.name_en} ({m.district.name_zh}), {m.district.city}; "
                  f"registry {reg.version} from {reg.source_dir}")
    table = Table("zone", "name", "area m²", "counters")
    for z in reg.zones.values():
        table.add_row(z.id, f"{z.name_zh} {z.name_en}", f"{z.area_m2:,.0f}",
                      str(len(reg.counters_by_zone[z.id])))
    console.print(table)
    ring = sum(c.capacity for c in reg.carparks.values() if c.ring_road)
    console.print(f"{len(reg.carparks)} car parks, {sum(c.capacity for c in reg.carparks.values())}"
                  f" spaces ({ring} on the underground ring road); {len(reg.stations)} stations")


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("settings")(show_settings)
    app.command("registry")(show_registry)
