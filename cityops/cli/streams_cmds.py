"""Streams subcommands: ``aqi`` (HJ 633-2012 calculator); ``worker``, ``alerts`` join later."""

from __future__ import annotations

import json

import typer

from cityops.cli.common import console, fail

# ============================================================================================
# aqi — HJ 633-2012 calculator (domain-logic block; owned by the streams domain engineer)
# ============================================================================================

AQI_ARGS: tuple[str, ...] = ("pm25", "pm10", "o3_1h", "o3_8h", "no2", "so2", "co", "so2_24h")


def _parse_concentrations(pairs: list[str]) -> dict[str, float]:
    """``name=value`` tokens as floats; unknown names or bad numbers are one-line errors."""
    out: dict[str, float] = {}
    for token in pairs:
        name, sep, raw = token.partition("=")
        name = name.strip().lower().replace(".", "").replace("-", "_")
        if not sep or name not in AQI_ARGS:
            fail(f"{token!r}: expected NAME=VALUE with NAME one of {', '.join(AQI_ARGS)}")
        try:
            value = float(raw)
        except ValueError:
            fail(f"{token!r}: {raw!r} is not a number")
        if not value >= 0:
            fail(f"{token!r}: concentration must be ≥ 0")
        out[name] = value
    return out


def aqi_command(
    concentrations: list[str] = typer.Argument(
        None, help="NAME=VALUE pairs: pm25 pm10 o3_1h o3_8h no2 so2 (µg/m³), co (mg/m³), "
        "so2_24h (hourly mode, used when so2 > 800)."),
    averaging: str = typer.Option("1h", "--averaging", "-a",
                                  help="1h: hourly real-time report; 24h: daily report."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Compute China's AQI (HJ 633-2012) from pollutant concentrations."""
    from cityops.streams.aqi import POLLUTANT_LABELS, compute_aqi

    if averaging not in ("1h", "24h"):
        fail(f"--averaging must be 1h or 24h, got {averaging!r}")
    values = _parse_concentrations(concentrations or [])
    if not values:
        fail("give at least one concentration, e.g. cityops aqi pm25=80 o3_1h=120")
    result = compute_aqi(**values, averaging=averaging)  # type: ignore[arg-type]
    if as_json:
        typer.echo(json.dumps(result.as_dict(), ensure_ascii=False, sort_keys=True))
        return
    primary = ", ".join(POLLUTANT_LABELS[p] for p in result.primary_pollutants) or "—"
    console.print(f"AQI ({averaging}): {result.aqi}  {result.category_zh} "
                  f"({result.category_en}, level {result.level}, {result.colour})",
                  highlight=False)
    console.print(f"primary pollutant: {primary}", highlight=False)
    for name, value in result.iaqi.items():
        console.print(f"  IAQI {POLLUTANT_LABELS[name]}: {value}", highlight=False)
    for note in result.notes:
        console.print(f"  note: {note}", highlight=False)


def _register_aqi(app: typer.Typer) -> None:
    app.command("aqi")(aqi_command)


# ============================================================================================
# end of the aqi block
# ============================================================================================


def register(app: typer.Typer) -> None:
    """Add this module's subcommands to the root app."""
    _register_aqi(app)
