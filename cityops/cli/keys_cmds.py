"""``cityops keys add | list | revoke``: intake keys for vendors, bearer tokens for the worker."""

from __future__ import annotations

import typer
from rich.table import Table

from cityops.cli.common import console, err_console, fail, settings_or_exit
from cityops.core.exceptions import AuthError
from cityops.core.keys import ROLES, KeyStore
from cityops.core.settings import FEEDS

keys_app = typer.Typer(help="API keys of the intake and bearer tokens of the worker.",
                       no_args_is_help=True)


def _store() -> KeyStore:
    return KeyStore(settings_or_exit().keys_path)


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


@keys_app.command("add")
def keys_add(
    name: str = typer.Argument(..., help="Who holds it: a vendor, a person, a service."),
    kind: str = typer.Option("", "--kind", help="intake or worker (default: worker when "
                             "--role is given, else intake)."),
    feeds: str = typer.Option("", "--feeds", help=f"Intake: feeds it may send ({','.join(FEEDS)}"
                              " or *)."),
    sources: str = typer.Option("", "--sources", help="Intake: source ids it may send, "
                                "comma-separated; shell patterns allowed (cp-*, *)."),
    role: list[str] = typer.Option([], "--role", help=f"Worker: {' | '.join(ROLES)} "
                                   "(repeatable)."),
) -> None:
    """Create a key and print it once; only its digest is stored."""
    kind = kind or ("worker" if role else "intake")
    if kind not in ("intake", "worker"):
        fail(f"--kind must be intake or worker, not {kind!r}")
    bad = set(_csv(feeds)) - set(FEEDS) - {"*"}
    if bad:
        fail(f"unknown feed(s) {', '.join(sorted(bad))} (allowed: {', '.join(FEEDS)}, *)")
    store = _store()
    try:
        key, token = store.add(name, kind, feeds=_csv(feeds), sources=_csv(sources),  # type: ignore[arg-type]
                               roles=tuple(role))
    except AuthError as exc:
        fail(str(exc))
    typer.echo(token)
    err_console.print(f"key {key.key_id} ({kind}) for {name} added to {store.path}; the "
                      "token above is shown only now", highlight=False)


@keys_app.command("list")
def keys_list(
    show_revoked: bool = typer.Option(False, "--all", help="Include revoked keys."),
) -> None:
    """Keys with their scope (never the tokens)."""
    store = _store()
    try:
        keys = store.keys()
    except AuthError as exc:
        fail(str(exc))
    table = Table("id", "name", "kind", "scope", "created", "revoked")
    for k in keys:
        if not (k.active or show_revoked):
            continue
        scope = (f"feeds {','.join(k.feeds)}; sources {','.join(k.sources)}"
                 if k.kind == "intake" else f"roles {','.join(k.roles)}")
        table.add_row(k.key_id, k.name, k.kind, scope, k.created_at, k.revoked_at or "")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(ident: str = typer.Argument(..., help="Key id, or a name (all its keys).")
                ) -> None:
    """Revoke keys; a running intake or worker refuses them from its next request."""
    try:
        hits = _store().revoke(ident)
    except AuthError as exc:
        fail(str(exc), code=1)
    for k in hits:
        console.print(f"revoked {k.key_id} ({k.kind}, {k.name})", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
