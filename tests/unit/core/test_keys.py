"""Key store: digests only, scopes, roles, revocation, and the loopback-only open door."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cityops.core.exceptions import AuthError
from cityops.core.keys import LOCAL, Gate, KeyStore, is_loopback


def test_token_is_never_stored(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    key, token = store.add("acme", "intake", feeds=("parking",), sources=("cp_*",))
    text = (tmp_path / "keys.json").read_text()
    assert token not in text and token.split(".")[2] not in text
    assert key.digest in text
    assert stat.S_IMODE((tmp_path / "keys.json").stat().st_mode) == 0o600


def test_verify_kind_and_revocation(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    key, token = store.add("ops", "worker", roles=("operator",))
    assert store.verify(token, "worker") == key
    assert store.verify(token, "intake") is None          # a worker token opens no intake
    assert store.verify(token[:-1] + ("A" if token[-1] != "A" else "B"), "worker") is None
    assert store.verify("cty.nosuchid.x", "worker") is None
    assert store.verify("garbage", "worker") is None
    other = KeyStore(tmp_path / "keys.json")              # e.g. the running worker's copy
    assert other.verify(token, "worker") is not None
    store.revoke("ops")
    assert other.verify(token, "worker") is None          # re-read on change: no restart


def test_scopes_and_roles(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    _, intake = store.add("acme", "intake", feeds=("parking",), sources=("cp_w*", "cp_deyi"))
    _, viewer = store.add("wall", "worker", roles=("viewer",))
    gate = Gate(store, "intake", "127.0.0.1")
    p = gate.principal(f"Bearer {intake}")
    assert p is not None and p.allows_feed("parking") and not p.allows_feed("air")
    assert p.allows_source("cp_wfc") and p.allows_source("cp_deyi")
    assert not p.allows_source("cp_guotai")
    assert gate.principal(None, api_key=intake) == p
    assert gate.principal(None) is None and gate.principal("Bearer nope") is None
    w = Gate(store, "worker", "127.0.0.1").principal(f"bearer {viewer}")
    assert w is not None and w.may("read") and not w.may("ack") and not w.may("sql")


def test_bad_keys_are_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    with pytest.raises(AuthError, match="unknown role"):
        store.add("x", "worker", roles=("admin",))
    with pytest.raises(AuthError, match="feeds and source ids"):
        store.add("x", "intake", feeds=("air",))
    with pytest.raises(AuthError, match="no active key"):
        store.revoke("nobody")


def test_open_only_on_loopback_without_keys(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    assert Gate(store, "worker", "127.0.0.1").principal(None) is LOCAL
    with pytest.raises(AuthError) as err:
        Gate(store, "worker", "0.0.0.0").check_startup("the worker web server")
    assert "\n" not in str(err.value) and "refusing to start" in str(err.value)
    assert Gate(store, "worker", "0.0.0.0").principal(None) is None
    store.add("wall", "worker", roles=("viewer",))
    Gate(store, "worker", "0.0.0.0").check_startup("the worker web server")
    assert Gate(store, "worker", "127.0.0.1").principal(None) is None   # keys exist: locked
    assert Gate(store, "intake", "127.0.0.1").principal(None) is LOCAL  # per door


@pytest.mark.parametrize(("host", "loop"), [("127.0.0.1", True), ("::1", True),
                                            ("localhost", True), ("0.0.0.0", False),
                                            ("::", False), ("10.0.0.5", False)])
def test_is_loopback(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop
