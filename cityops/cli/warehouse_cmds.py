"""Warehouse commands: ``cityops warehouse migrate|status|tables``, ``cityops sql``,
``cityops report night-economy``."""

from __future__ import annotations

import io
import json
import sys
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from cityops.cli.common import console, err_console, fail, registry_or_exit, settings_or_exit
from cityops.core.settings import Settings
from cityops.exceptions import CityopsError

if TYPE_CHECKING:
    from cityops.warehouse.base import Warehouse

warehouse_app = typer.Typer(help="ClickHouse warehouse: schema migrations and the catalogue.",
                            no_args_is_help=True)
report_app = typer.Typer(help="Studies computed from the warehouse.", no_args_is_help=True)

URL_OPTION = typer.Option(None, "--url", help="Warehouse URL (default: CITYOPS_WAREHOUSE_URL, "
                          "else chdb under CITYOPS_DATA_DIR).")


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def _connect(settings: Settings, url: str | None, *, existing: bool = False) -> Warehouse:
    """The warehouse to use; with ``existing`` (commands that only read) an embedded path
    that holds nothing is refused: chdb makes a warehouse wherever it is pointed, so a
    mistyped ``--url chdb://relative/path`` silently made an empty one and the query then
    found no table."""
    from cityops.warehouse.backend import connect, embedded_path

    try:
        path = embedded_path(url or settings.effective_warehouse_url) if existing else None
    except CityopsError as exc:
        fail(f"cannot open the warehouse: {exc}", code=1)
    if path is not None and path != ":memory:" and not Path(path).exists():
        fail(f"no warehouse at {path}: nothing has been stored there (`cityops run` or "
             "`cityops warehouse migrate` makes one; check --url / CITYOPS_WAREHOUSE_URL)",
             code=1)
    if url is None and remote_sql_url(settings) and not settings.worker_sql_url:
        fail(f"a running worker holds the embedded warehouse {settings.effective_warehouse_url}"
             " (chdb: one process per path); it migrates at start-up — query it with "
             "`cityops sql`, or stop the worker first", code=1)
    try:
        return connect(url or settings.effective_warehouse_url, settings=settings)
    except CityopsError as exc:
        fail(f"cannot open the warehouse: {exc}", code=1)


def remote_sql_url(settings: Settings) -> str | None:
    """Where ``cityops sql`` should send its query instead of opening chdb itself.

    A worker that holds the embedded warehouse owns the only chdb session of that path, so
    queries go to its read-only ``/sql`` endpoint: ``CITYOPS_WORKER_SQL_URL`` when set, else
    the endpoint the running worker advertises in its pid/endpoint file. ``None``: open the
    warehouse directly (server mode, or no worker running).
    """
    if settings.worker_sql_url:
        return settings.worker_sql_url
    if not settings.effective_warehouse_url.startswith("chdb:"):
        return None
    from cityops.streams.web import remote_sql_url as advertised

    return advertised(settings)


# --- warehouse migrate | status | tables -------------------------------------------------------

CLUSTER_OPTION = typer.Option(None, "--cluster", help="ClickHouse cluster name (remote_servers):"
                              " the cluster schema, ON CLUSTER, replicated local tables and "
                              "Distributed tables over them (docs/deploy.md).")


def _layout(cluster: str | None, database: str) -> Any:
    if cluster is None:
        return None
    from cityops.warehouse.cluster import ClusterLayout

    try:
        return ClusterLayout(cluster, database)
    except CityopsError as exc:
        fail(str(exc))


@warehouse_app.command("migrate")
def migrate_cmd(url: str | None = URL_OPTION, cluster: str | None = CLUSTER_OPTION) -> None:
    """Apply pending schema migrations, align the raw TTL, reload dimension tables."""
    from cityops.warehouse.migrate import migrate

    settings = settings_or_exit()
    registry = registry_or_exit(settings)
    if cluster is not None and (url or settings.effective_warehouse_url).startswith("chdb:"):
        fail("--cluster needs a ClickHouse server URL (clickhouse://…), not the embedded chdb")
    wh = _connect(settings, url)
    layout = _layout(cluster, wh.database)
    try:
        report = migrate(wh, timezone=settings.timezone, raw_ttl_days=settings.raw_ttl_days,
                         registry=registry, progress=lambda m: err_console.print(f"  {m}"),
                         layout=layout)
    except CityopsError as exc:
        fail(str(exc), code=1)
    finally:
        wh.close()
    if not report.changed:
        console.print(f"warehouse {wh.url}: up to date ({len(report.skipped)} migrations), "
                      "nothing to do")
        return
    console.print(f"warehouse {wh.url}: applied {len(report.applied)} migration(s)"
                  + (f", raw TTL {report.ttl_changed} days" if report.ttl_changed else "")
                  + (f", dimensions reloaded ({sum(report.dimensions_loaded.values())} rows)"
                     if report.dimensions_loaded else ""))


@warehouse_app.command("ddl")
def ddl_cmd(
    cluster: str | None = CLUSTER_OPTION,
    database: str = typer.Option("cityops", "--database",
                                 help="Database the Distributed tables point at."),
) -> None:
    """Print the schema DDL (with --cluster: its generated cluster form), one statement each."""
    from cityops.warehouse.migrate import schema_ddl

    settings = settings_or_exit()
    try:
        statements = schema_ddl(settings.timezone, _layout(cluster, database))
    except CityopsError as exc:
        fail(str(exc), code=1)
    current = None
    for label, stmt in statements:
        if label != current:
            sys.stdout.write(f"\n-- {label}\n")
            current = label
        sys.stdout.write(stmt + ";\n\n")


@warehouse_app.command("status")
def status_cmd(url: str | None = URL_OPTION) -> None:
    """Migration state (applied / pending / failed), raw TTL and dimension version."""
    from cityops.warehouse.migrate import read_meta, status

    settings = settings_or_exit()
    wh = _connect(settings, url, existing=True)
    try:
        lines = status(wh)
        meta = read_meta(wh)
    except CityopsError as exc:
        fail(str(exc), code=1)
    finally:
        wh.close()
    table = Table(title=f"warehouse {wh.url}")
    for col in ("migration", "status", "detail"):
        table.add_column(col)
    colours = {"applied": "green", "pending": "yellow", "failed": "red", "changed": "red"}
    for line in lines:
        colour = colours.get(line.status, "magenta")
        table.add_row(line.label, f"[{colour}]{line.status}[/{colour}]", line.detail)
    console.print(table)
    ttl = meta.get("raw_ttl_days")
    console.print(f"raw TTL: {ttl + ' days' if ttl and ttl != '0' else 'none'} "
                  f"(setting CITYOPS_RAW_TTL_DAYS={settings.raw_ttl_days}); dimensions "
                  f"{meta.get('dimensions_hash', 'not loaded')}")
    if any(line.status in ("failed", "changed", "running") for line in lines):
        raise typer.Exit(1)


@warehouse_app.command("tables")
def tables_cmd(
    url: str | None = URL_OPTION,
    internal: bool = typer.Option(False, "--all", help="Include rollup storage (agg_*), "
                                  "materialized views (mv_*) and bookkeeping tables."),
) -> None:
    """List tables and views with their descriptions."""
    from cityops.warehouse.catalog import list_objects

    settings = settings_or_exit()
    wh = _connect(settings, url, existing=True)
    try:
        objects = list_objects(wh, include_internal=internal)
    except CityopsError as exc:
        fail(str(exc), code=1)
    finally:
        wh.close()
    if not objects:
        fail("no tables: run `cityops warehouse migrate` first", code=1)
    table = Table(title=f"warehouse {wh.url}")
    for col in ("name", "kind", "rows", "description"):
        table.add_column(col, overflow="fold")
    for obj in objects:
        table.add_row(obj.name, obj.kind, "" if obj.rows is None else f"{obj.rows:,}",
                      obj.comment)
    console.print(table)


# --- cityops sql ---------------------------------------------------------------------------------

def _remote_df(endpoint: str, sql: str, max_rows: int, token: str = "") -> Any:
    import httpx
    import pandas

    from cityops.core.keys import bearer_headers

    try:
        resp = httpx.post(endpoint, json={"sql": sql, "format": "json", "max_rows": max_rows},
                          timeout=300, headers=bearer_headers(token))
    except httpx.HTTPError as exc:
        fail(f"worker SQL endpoint {endpoint}: {exc}", code=1)
    try:
        body = resp.json()
    except ValueError:
        fail(f"worker SQL endpoint {endpoint} answered {resp.status_code} without JSON", code=1)
    if resp.status_code == 401:
        fail("the worker wants a token: set CITYOPS_WORKER_TOKEN to an analyst token "
             "(`cityops keys add NAME --role analyst`)", code=1)
    if resp.status_code == 403:
        fail(f"forbidden: {body.get('detail', 'this token lacks the analyst role')}", code=1)
    if resp.status_code != 200:
        fail(f"{body.get('code', 'error')}: {body.get('error', resp.text)}", code=1)
    return pandas.DataFrame(body.get("rows") or [], columns=body.get("columns") or [])


def _check_out(out: Path | None) -> None:
    """Refuse an ``--out`` that cannot be written before any work is done."""
    if out is None:
        return
    if out.is_dir():
        fail(f"--out {out}: is a folder; give a file name")
    if not out.parent.is_dir():
        fail(f"--out {out}: the folder {out.parent} does not exist")


def _cell(value: Any) -> Any:
    """A cell as text output shows it: arrays and maps as JSON (numpy printed ``['a' 'b']``
    and ``array([1, 2], dtype=uint8)``, which no reader parses), anything else as it is."""
    from cityops.warehouse.access import plain_value

    if isinstance(value, list | tuple | dict) or (
            hasattr(value, "tolist") and not isinstance(value, str | bytes)):
        plain = plain_value(value)
        if isinstance(plain, list | dict):
            return json.dumps(plain, ensure_ascii=False)
    return value


def _zoned_times(df: Any) -> Any:
    """Zone-aware time columns as ISO-8601 text with their own offset, and cells pandas holds
    as Python objects (dates, arrays, decimals) as ``/sql`` gives them: pandas' JSON turned
    district times into UTC (``…T16:30:00.000Z`` for 00:30 in the district) and a ``Date``
    into a midnight (``2026-12-01T00:00:00.000``)."""
    import pandas

    from cityops.warehouse.access import plain_value

    out = df.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pandas.DatetimeTZDtype):
            out[col] = out[col].map(lambda t: None if pandas.isna(t) else t.isoformat())
        elif out[col].dtype == object:
            out[col] = out[col].map(plain_value)
    return out


def _write(df: Any, fmt: OutputFormat, out: Path | None) -> None:
    try:
        _write_result(df, fmt, out)
    except OSError as exc:
        fail(f"--out {out}: {exc.strerror or exc}")


def _write_result(df: Any, fmt: OutputFormat, out: Path | None) -> None:
    if fmt in (OutputFormat.csv, OutputFormat.table):  # JSON keeps arrays as arrays
        objects = [c for c in df.columns if df[c].dtype == object]  # arrays, maps, text
        if objects:
            df = df.copy()
            for col in objects:
                df[col] = df[col].map(_cell)
    if fmt is OutputFormat.parquet:
        if out is None and sys.stdout.isatty():
            fail("parquet is binary: give --out FILE or redirect stdout")
        buffer = io.BytesIO()
        df.to_parquet(buffer, index=False)
        if out is not None:
            out.write_bytes(buffer.getvalue())
        else:
            sys.stdout.buffer.write(buffer.getvalue())
            sys.stdout.buffer.flush()
        return
    if fmt is OutputFormat.csv:
        text = df.to_csv(index=False)
    elif fmt is OutputFormat.json:
        text = _zoned_times(df).to_json(orient="records", date_format="iso", force_ascii=False,
                                        lines=True)
    else:
        table = Table(show_lines=False)
        for col in df.columns:
            table.add_column(str(col), overflow="fold")
        for rec in df.itertuples(index=False, name=None):
            table.add_row(*("NULL" if v is None or (isinstance(v, float) and v != v)
                            else str(v) for v in rec))
        if out is None:
            console.print(table)
            err_console.print(f"{len(df)} row(s)")
            return
        buf = io.StringIO()
        from rich.console import Console

        Console(file=buf, width=200).print(table)
        text = buf.getvalue()
    if out is not None:
        out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")


def sql_cmd(
    query: str = typer.Argument(..., help="One SQL statement (read-only unless --write)."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f",
                                     help="Output: table, csv, json (lines) or parquet."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the result to a file."),
    write: bool = typer.Option(False, "--write", help="Allow statements that change data "
                               "(default: SELECT / WITH / SHOW / DESCRIBE / EXPLAIN only)."),
    max_rows: int | None = typer.Option(None, "--max-rows", help="Result row limit "
                                        "(default CITYOPS_SQL_MAX_RESULT_ROWS)."),
    url: str | None = URL_OPTION,
) -> None:
    """Run one SQL statement against the warehouse; read-only by default."""
    settings = settings_or_exit()
    _check_out(out)
    limit = max_rows or settings.sql_max_result_rows
    endpoint = None if (url or write) else remote_sql_url(settings)
    if endpoint:
        df = _remote_df(endpoint, query, limit, settings.worker_token.get_secret_value())
    else:
        wh = _connect(settings, url, existing=not write)
        try:
            df = wh.analyst_df(query, readonly=not write, max_rows=limit,
                               max_seconds=settings.sql_max_execution_s)
        except CityopsError as exc:
            code = getattr(exc, "code", "error")
            hint = {"result_too_large": f" (limit {limit} rows: add LIMIT or aggregate, or "
                    "raise --max-rows)",
                    "read_only": "", "multiple_statements": ""}.get(code, "")
            fail(f"{code}: {exc}{hint}", code=1)
        finally:
            wh.close()
    _write(df, fmt, out)


# --- report night-economy ------------------------------------------------------------------------

def _parse_date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{name} {value!r} is not a date (YYYY-MM-DD)")


@report_app.command("night-economy")
def night_economy_cmd(
    date_from: str = typer.Option(..., "--from", help="First night (evening date), YYYY-MM-DD."),
    date_to: str = typer.Option(..., "--to", help="Last night (evening date), YYYY-MM-DD."),
    out: Path = typer.Option(..., "--out", help="Output folder (HTML, PNG charts, CSV tables)."),
    url: str | None = URL_OPTION,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Night-economy study (nights 18:00–02:00): HTML report with charts and CSV tables."""
    from cityops.warehouse.report import night_economy_report

    start, end = _parse_date(date_from, "--from"), _parse_date(date_to, "--to")
    if end < start:
        fail("--to is before --from")
    settings = settings_or_exit()
    wh = _connect(settings, url, existing=True)
    try:
        result = night_economy_report(wh, start, end, out, timezone=settings.timezone,
                                      progress=progress)
    except CityopsError as exc:
        fail(str(exc), code=1)
    except OSError as exc:  # the folder cannot be made or written (a file of that name …)
        fail(f"--out {out}: {exc.strerror or exc}")
    finally:
        wh.close()
    console.print(f"report: {result.index} ({len(result.tables)} tables, "
                  f"{len(result.charts)} charts, {result.nights} nights)")
    if result.empty_note:
        err_console.print(f"warning: {result.empty_note}")


def register(app: typer.Typer) -> None:
    """Add ``warehouse``, ``sql`` and ``report`` to the root app."""
    app.add_typer(warehouse_app, name="warehouse")
    app.command("sql")(sql_cmd)
    app.add_typer(report_app, name="report")
