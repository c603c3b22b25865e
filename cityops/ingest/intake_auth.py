"""The intake's lock: a FastAPI dependency that turns the caller's API key into a principal.

Kept apart from the routes and from NGSI-LD mapping: every route depends on ``caller``; the
feed scope is checked where the feed is known (the path, or the mapped entity), the source
scope once each record is decoded (``scope_violation``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import Request

from cityops.core.keys import Gate, Principal

AUTH_HEADER = 'Bearer realm="cityops-intake"'


class Refused(Exception):
    """An answer the intake gives before doing any work (401 / 403)."""

    def __init__(self, status: int, body: dict[str, Any],
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(body.get("error", ""))
        self.status, self.body, self.headers = status, body, headers


def unauthorized() -> Refused:
    return Refused(401, {"error": "unauthorized", "detail": "missing or unknown API key; send "
                         "`Authorization: Bearer <key>` or `X-API-Key: <key>`"},
                   {"WWW-Authenticate": AUTH_HEADER})


def forbidden(principal: Principal, scope: str) -> Refused:
    return Refused(403, {"error": "forbidden", "scope": scope,
                         "detail": f"key {principal.name!r} is not allowed {scope} "
                         f"(feeds {','.join(principal.feeds)}; sources "
                         f"{','.join(principal.sources)})"})


def caller_dependency(gate: Gate) -> Callable[[Request], Principal]:
    """The dependency every intake route declares."""

    def caller(request: Request) -> Principal:
        principal = gate.principal(request.headers.get("authorization"),
                                   request.headers.get("x-api-key"))
        if principal is None:
            raise unauthorized()
        return principal

    return caller


def check_feed(principal: Principal, feed: str) -> None:
    if not principal.allows_feed(feed):
        raise forbidden(principal, f"feed:{feed}")


#: the site a record is about, where it is not its ``source``: a car park's or a station's
#: state is theirs whoever sends it (a footfall counter's zone is checked against the registry
#: by validation; an incident's source is the reporting desk)
SUBJECT_FIELDS = {"parking": "carpark_id", "air": "station_id"}


def scoped_ids(record: Any) -> tuple[str, ...]:
    """The ids a key's source scope must cover for ``record``: its source, and the car park
    or station it reports on (a key for ``cp_deyi`` sent ``cp_guotai``'s occupancy under the
    source ``cp_deyi``, and the boards showed it)."""
    field = SUBJECT_FIELDS.get(record.feed)
    subject = getattr(record, field, None) if field else None
    if subject is None or subject == record.source:
        return (record.source,)
    return (record.source, subject)


def scope_violation(principal: Principal, records: Iterable[tuple[str, tuple[str, ...]]]
                    ) -> Refused | None:
    """403 for the first feed or site id (``scoped_ids``) the key may not send, else None."""
    for feed, ids in records:
        if not principal.allows_feed(feed):
            return forbidden(principal, f"feed:{feed}")
        for site in ids:
            if not principal.allows_source(site):
                return forbidden(principal, f"source:{site}")
    return None
