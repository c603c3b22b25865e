"""Helpers shared by CLI modules: settings with friendly errors, console, exit codes."""

from __future__ import annotations

import sys
from datetime import datetime, tzinfo
from typing import NoReturn

import typer
from rich.console import Console

from cityops.core.exceptions import SettingsError
from cityops.core.registry import Registry, load_registry
from cityops.core.settings import Settings, load_settings
from cityops.exceptions import CityopsError

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line error (no traceback) and exit."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings_or_exit() -> Settings:
    """Settings, or a clear message naming the bad variable and exit status 2."""
    from cityops.compiled import read_enabled

    try:
        settings = load_settings()
    except SettingsError as exc:
        fail(str(exc))
    invalid = read_enabled()[1]  # read apart, at import (``cityops.compiled``)
    if invalid is not None:
        fail(f"invalid configuration:\n  {invalid}")
    return settings


def registry_or_exit(settings: Settings) -> Registry:
    try:
        return load_registry(settings.registry_dir)
    except CityopsError as exc:
        fail(f"site registry {settings.registry_dir}: {exc}")


def is_tty() -> bool:
    return sys.stdout.isatty()


def when_or_exit(text: str | None, tz: tzinfo, name: str) -> datetime | None:
    """An option's time: ISO-8601, ``Z`` for UTC, ``now``; a time without an offset is the
    district's (``tz``), never the host's; anything else is one line and exit status 2."""
    if not text:
        return None
    if text.lower() == "now":
        return datetime.now(tz)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{name} {text!r} is not ISO-8601 (e.g. 2025-10-01T00:00+08:00, or 'now')")
    return value if value.tzinfo else value.replace(tzinfo=tz)
