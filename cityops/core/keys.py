"""Keys and tokens for the doors: vendors' intake keys and the worker's bearer tokens.

A key is ``cty.<key id>.<secret>``, shown once when created. The store (a JSON file, mode
0600) keeps only its SHA-256 digest and its scope: intake keys name the feeds and source ids
(``fnmatch`` patterns) they may send; worker tokens carry roles (``viewer`` reads alerts and
health, ``operator`` also acknowledges, ``analyst`` also queries ``/sql``). The secret is 256
random bits, so a fast hash is enough (a slow one only protects guessable passwords); digests
are compared with ``hmac.compare_digest``, and an unknown key id is compared against a dummy
digest, so timing tells nothing about which ids exist.

A door is open (anonymous ``local`` principal) only when it listens on loopback and the store
holds no active key of its kind; on any other address it refuses to start without one.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from cityops.core.exceptions import AuthError

Kind = Literal["intake", "worker"]
ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),             # /alerts, /health, /metrics
    "operator": frozenset({"read", "ack"}),    # + acknowledge alerts
    "analyst": frozenset({"read", "sql"}),     # + read-only SQL
}
PREFIX = "cty"
_DUMMY = hashlib.sha256(b"cityops-no-such-key").hexdigest()


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """One stored key: its digest and scope, never the secret itself."""

    key_id: str
    name: str
    kind: Kind
    digest: str
    feeds: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    created_at: str = ""
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class Principal:
    """Who is calling, and what the key lets them do."""

    name: str
    key_id: str | None = None
    feeds: tuple[str, ...] = ("*",)
    sources: tuple[str, ...] = ("*",)
    permissions: frozenset[str] = field(default_factory=lambda: frozenset({"read", "ack", "sql"}))

    @property
    def authenticated(self) -> bool:
        return self.key_id is not None

    def allows_feed(self, feed: str) -> bool:
        return "*" in self.feeds or feed in self.feeds

    def allows_source(self, source: str) -> bool:
        return any(fnmatch.fnmatchcase(source, p) for p in self.sources)

    def may(self, permission: str) -> bool:
        return permission in self.permissions


LOCAL = Principal("local")


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class KeyStore:
    """The key file; re-read when it changes, so a revocation applies without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, ApiKey] = {}
        self._stamp: tuple[float, int] | None = None

    # --- reading -------------------------------------------------------------------------
    def keys(self) -> list[ApiKey]:
        self._refresh()
        return list(self._keys.values())

    def active(self, kind: Kind) -> list[ApiKey]:
        return [k for k in self.keys() if k.kind == kind and k.active]

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._keys, self._stamp = {}, None
            return
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            keys = [ApiKey(**{**k, "feeds": tuple(k.get("feeds", ())),
                              "sources": tuple(k.get("sources", ())),
                              "roles": tuple(k.get("roles", ()))})
                    for k in data.get("keys", [])]
        except (OSError, ValueError, TypeError) as exc:
            raise AuthError(f"key file {self.path} is unreadable ({type(exc).__name__})") from None
        self._keys = {k.key_id: k for k in keys}
        self._stamp = stamp

    def verify(self, token: str, kind: Kind) -> ApiKey | None:
        """The active key of ``kind`` the token belongs to, else None (constant-time compare)."""
        parts = token.split(".")
        key_id = parts[1] if len(parts) == 3 and parts[0] == PREFIX else ""
        self._refresh()
        key = self._keys.get(key_id)
        ok = hmac.compare_digest(key.digest if key else _DUMMY, digest(token))
        if not ok or key is None or not key.active or key.kind != kind:
            return None
        return key

    # --- writing -------------------------------------------------------------------------
    def add(self, name: str, kind: Kind, *, feeds: tuple[str, ...] = (),
            sources: tuple[str, ...] = (), roles: tuple[str, ...] = ()) -> tuple[ApiKey, str]:
        """Create a key; returns it and the token (the only time the token exists in clear)."""
        unknown = set(roles) - set(ROLES)
        if unknown:
            raise AuthError(f"unknown role(s) {', '.join(sorted(unknown))} "
                            f"(allowed: {', '.join(ROLES)})")
        if kind == "worker" and not roles:
            raise AuthError("a worker token needs at least one role")
        if kind == "intake" and (not feeds or not sources):
            raise AuthError("an intake key needs its feeds and source ids (use * for all)")
        key_id = secrets.token_hex(5)
        token = f"{PREFIX}.{key_id}.{secrets.token_urlsafe(32)}"
        key = ApiKey(key_id, name, kind, digest(token), tuple(feeds), tuple(sources),
                     tuple(roles), datetime.now(UTC).isoformat(timespec="seconds"))
        self._write([*self.keys(), key])
        return key, token

    def revoke(self, ident: str) -> list[ApiKey]:
        """Revoke the key with this id, or every active key with this name."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        keys = self.keys()
        hits = [k for k in keys if k.active and ident in (k.key_id, k.name)]
        if not hits:
            raise AuthError(f"no active key with id or name {ident!r}")
        ids = {k.key_id for k in hits}
        self._write([replace(k, revoked_at=now) if k.key_id in ids else k for k in keys])
        return hits

    def _write(self, keys: list[ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"keys": [asdict(k) for k in keys]}, fh, indent=1)
        tmp.replace(self.path)
        self._stamp = None


@dataclass
class Gate:
    """One door's lock: intake (``kind="intake"``) or worker web (``kind="worker"``)."""

    store: KeyStore
    kind: Kind
    host: str

    def check_startup(self, what: str) -> None:
        """Refuse a non-loopback bind without credentials (one line saying what to do)."""
        if not is_loopback(self.host) and not self.store.active(self.kind):
            add = ("cityops keys add NAME --kind intake --feeds … --sources …"
                   if self.kind == "intake" else "cityops keys add NAME --role viewer")
            raise AuthError(
                f"refusing to start {what} on {self.host}: no {self.kind} key in "
                f"{self.store.path}; add one (`{add}`) or bind 127.0.0.1")

    @property
    def enforced(self) -> bool:
        return not is_loopback(self.host) or bool(self.store.active(self.kind))

    def principal(self, authorization: str | None, api_key: str | None = None
                  ) -> Principal | None:
        """The caller, ``LOCAL`` on an open door, or None (401: missing or unknown key)."""
        if not self.enforced:
            return LOCAL
        token = api_key or ""
        if authorization and authorization[:7].lower() == "bearer ":
            token = authorization[7:].strip()
        if not token:
            return None
        key = self.store.verify(token, self.kind)
        if key is None:
            return None
        perms = frozenset().union(*(ROLES[r] for r in key.roles)) if key.roles else frozenset()
        return Principal(key.name, key.key_id, key.feeds or ("*",), key.sources or ("*",),
                         perms)


def bearer_headers(token: str) -> dict[str, str]:
    """Headers a client sends to a worker endpoint (none when no token is configured)."""
    return {"Authorization": f"Bearer {token}"} if token else {}
