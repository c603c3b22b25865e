"""The terminal board's SQL client: bearer token when configured, one clear error otherwise."""

from __future__ import annotations

import socket

import pytest

from cityops.dashboards.exceptions import SqlEndpointError
from cityops.dashboards.terminal import WorkerSql


def test_token_is_sent_as_a_bearer_header_only_when_set() -> None:
    assert WorkerSql("http://x/sql").headers() == {}
    assert WorkerSql("http://x/sql", token="t0k").headers() == {"Authorization": "Bearer t0k"}


def test_an_unreachable_endpoint_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SqlEndpointError, match=f"127.0.0.1:{port}/sql"):
        WorkerSql(f"http://127.0.0.1:{port}/sql", timeout_s=2).query_df("SELECT 1")
