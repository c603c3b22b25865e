"""Secrets: keep them out of text a person or a log can read.

Every secret setting is a ``SecretStr`` (its ``str`` is ``**********``) and may come from a
file named by ``CITYOPS_<NAME>_FILE``, as Docker and Kubernetes mount secrets. URLs that can
carry credentials (a ClickHouse URL, a webhook URL with its access key) are shown through
``redact_url`` / ``url_label`` only.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse, urlunparse

MASK = "**********"


def redact_url(url: str) -> str:
    """``url`` with the password (and any query string) replaced by the mask; the rest stays
    readable so an operator still sees which host and database is meant."""
    try:
        parsed = urlparse(url)
    except ValueError:
        return MASK
    netloc = parsed.netloc
    if parsed.password is not None or "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
    query = MASK if parsed.query else ""
    return urlunparse((parsed.scheme, netloc, parsed.path, parsed.params, query, ""))


def url_label(url: str, index: int | None = None) -> str:
    """A name for a secret-bearing URL (a webhook): scheme and host only, plus an index when
    several share a host. Webhook paths and queries carry the access key, so both are left out."""
    try:
        parsed = urlparse(url)
        host = parsed.hostname or "?"
        port = f":{parsed.port}" if parsed.port else ""
    except ValueError:
        return f"webhook#{index}" if index is not None else "webhook"
    suffix = f"#{index}" if index is not None else ""
    return f"{parsed.scheme}://{host}{port}{suffix}"


def split_url_password(url: str) -> tuple[str, str | None]:
    """(URL without its password, the percent-encoded password or None)."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url, None
    userinfo, _, hostport = parsed.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    netloc = f"{user}@{hostport}" if user else hostport
    return urlunparse(parsed._replace(netloc=netloc)), password


def read_secret_file(path: str) -> str:
    """A secret file's text without the trailing newline editors and ``echo`` add."""
    return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
