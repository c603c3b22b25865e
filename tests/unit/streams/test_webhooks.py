"""Webhook delivery against a real local HTTP server (no HTTP mocks)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import pytest

from cityops.core.settings import load_settings
from cityops.streams.alerts.webhooks import (
    WebhookDispatcher,
    WebhookTarget,
    payload,
    utc_offset_label,
)
from cityops.streams.records import AlertEvent, AlertEventKind, AlertState

#: the district's zone, as configured (a webhook text shows times in it)
TZ = load_settings().tz
SH = ZoneInfo("Asia/Shanghai")  # the district of these tests


class Hook:
    """A tiny webhook server: /ok, /flaky (two 500s, then 200), /fail (always 500),
    /errcode (HTTP 200 with a bot error code), /hold (answers when ``release`` is set)."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[dict]] = {}
        self.hits: dict[str, int] = {}
        self.release = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                path = self.path
                hook.hits[path] = hook.hits.get(path, 0) + 1
                status, answer = 200, {"errcode": 0, "errmsg": "ok"}
                if (path == "/flaky" and hook.hits[path] <= 2) or path == "/fail":
                    status = 500
                elif path == "/errcode":
                    answer = {"errcode": 45009, "errmsg": "api freq out of limit"}
                elif path == "/hold":
                    hook.release.wait(30)
                if status == 200:
                    hook.bodies.setdefault(path, []).append(body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    h.thread.start()
    yield h
    h.release.set()
    h.server.shutdown()
    h.server.server_close()


def event(seq: int = 0) -> AlertEvent:
    t = datetime(2026, 5, 1, 4, 0, tzinfo=UTC)
    return AlertEvent(alert_id="crowd_density:jfb_square:1777608000", rule_id="crowd_density",
                      rule_version="2026.11.1", subject="jfb_square", kind=AlertEventKind.FIRED,
                      state=AlertState.ACTIVE_UNACK, severity="critical", value=4.2,
                      threshold=4.0, message="Crowd density critical: jfb_square 4.2 ≥ 4",
                      event_time=t, emitted_at=t, seq=seq)


def test_target_style_detection() -> None:
    assert WebhookTarget.parse("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k").style \
        == "wecom"
    assert WebhookTarget.parse("https://oapi.dingtalk.com/robot/send?access_token=t").style \
        == "dingtalk"
    assert WebhookTarget.parse("dingtalk+http://127.0.0.1:1/x") == WebhookTarget(
        "http://127.0.0.1:1/x", "dingtalk")
    assert WebhookTarget.parse("https://example.org/hook").style == "json"


def test_dingtalk_signing_secret_is_kept_out_of_sight() -> None:
    t = WebhookTarget.parse("https://oapi.dingtalk.com/robot/send?access_token=tok"
                            "#secret=SECabc123")
    assert (t.style, t.secret, t.url) == ("dingtalk", "SECabc123",
                                          "https://oapi.dingtalk.com/robot/send?access_token=tok")
    assert "SECabc123" not in repr(t) and "tok" not in repr(t) and "tok" not in t.label
    # DingTalk's documented recipe: base64(HMAC-SHA256(secret, f"{ts}\n{secret}")), URL-encoded
    import base64
    import hashlib
    import hmac
    from urllib.parse import parse_qs, urlparse
    url = t.request_url(1_700_000_000_000)
    q = parse_qs(urlparse(url).query)
    want = base64.b64encode(hmac.new(b"SECabc123", b"1700000000000\nSECabc123",
                                     hashlib.sha256).digest()).decode()
    assert q["timestamp"] == ["1700000000000"] and q["sign"] == [want]
    assert q["access_token"] == ["tok"]
    assert WebhookTarget.parse("https://example.org/h").request_url() == "https://example.org/h"


def test_payload_shapes() -> None:
    wecom = payload(event(), "wecom", ZoneInfo("Asia/Shanghai"))
    assert wecom["msgtype"] == "markdown"
    assert set(wecom["markdown"]) == {"content"}
    assert "紧急" in wecom["markdown"]["content"]
    assert "2026-05-01 12:00:00 (UTC+8)" in wecom["markdown"]["content"]
    ding = payload(event(), "dingtalk", ZoneInfo("Asia/Shanghai"))
    assert set(ding["markdown"]) == {"title", "text"}
    london = payload(event(), "wecom", ZoneInfo("Europe/London"))["markdown"]["content"]
    assert "2026-05-01 05:00:00 (UTC+1)" in london  # the district's zone, summer time
    plain = payload(event(), "json", ZoneInfo("UTC"))
    assert plain["alert_id"] == "crowd_density:jfb_square:1777608000"


def test_delivery_styles_and_retries(hook: Hook) -> None:
    targets = [WebhookTarget(hook.url("/ok"), "wecom"),
               WebhookTarget(hook.url("/flaky"), "json"),
               WebhookTarget(hook.url("/fail"), "dingtalk")]

    async def main() -> WebhookDispatcher:
        d = WebhookDispatcher(targets, SH, attempts=3, backoff_initial_s=0.001,
                              backoff_max_s=0.01)
        await d.start()
        assert d.offer(event())
        await d.aclose(drain_timeout_s=30)
        return d

    d = asyncio.run(main())
    ok, flaky, fail = (d.stats[t.url] for t in targets)
    assert (ok.delivered, ok.attempts, ok.failed) == (1, 1, 0)
    assert hook.bodies["/ok"][0]["markdown"]["content"].startswith("**[紧急 critical]")
    assert (flaky.delivered, flaky.attempts) == (1, 3)  # two 500s, then delivered
    assert hook.bodies["/flaky"][0]["seq"] == 0
    assert (fail.delivered, fail.failed, fail.attempts) == (0, 1, 3)
    assert hook.hits["/fail"] == 3


def test_bot_errcode_is_retried_then_failed(hook: Hook) -> None:
    target = WebhookTarget(hook.url("/errcode"), "wecom")

    async def main() -> WebhookDispatcher:
        d = WebhookDispatcher([target], SH, attempts=2, backoff_initial_s=0.001)
        await d.start()
        d.offer(event())
        await d.aclose(drain_timeout_s=30)
        return d

    stats = asyncio.run(main()).stats[target.url]
    assert (stats.delivered, stats.failed, stats.attempts) == (0, 1, 2)


def test_slow_webhook_never_blocks_and_drops_are_counted(hook: Hook) -> None:
    slow = WebhookTarget(hook.url("/hold"), "json")
    fast = WebhookTarget(hook.url("/ok"), "json")

    async def main() -> WebhookDispatcher:
        d = WebhookDispatcher([slow, fast], SH, queue_size=2, attempts=1)
        await d.start()
        results = [d.offer(event(seq=i)) for i in range(10)]  # no await: nothing consumed
        assert results == [True, True] + [False] * 8
        await d.queues[fast.url].join()  # the fast hook gets its events meanwhile
        hook.release.set()
        await d.aclose(drain_timeout_s=30)
        return d

    d = asyncio.run(main())
    assert (d.stats[slow.url].dropped, d.stats[slow.url].delivered) == (8, 2)
    assert (d.stats[fast.url].dropped, d.stats[fast.url].delivered) == (8, 2)
    assert [b["seq"] for b in hook.bodies["/ok"]] == [0, 1]


def test_webhook_time_is_labelled_with_the_configured_zone() -> None:
    at = datetime(2026, 5, 1, 4, tzinfo=UTC)
    assert utc_offset_label(at.astimezone(TZ)) == "UTC+8"
    assert utc_offset_label(at) == "UTC"
    berlin = payload(event(), "wecom", ZoneInfo("Europe/Berlin"))["markdown"]["content"]
    assert "2026-05-01 06:00:00 (UTC+2)" in berlin


def test_events_older_than_the_age_limit_are_counted_not_sent(hook: Hook) -> None:
    """A backfill's alerts are history: stored, never paged; live ones still go out, even
    behind a flood of old ones that would have filled the queue."""
    target = WebhookTarget(hook.url("/ok"), "json")
    fired = event().event_time.timestamp()

    async def main() -> tuple[WebhookDispatcher, list[bool]]:
        d = WebhookDispatcher([target], SH, queue_size=2, attempts=1, max_age_s=3600,
                              clock=lambda: fired + 3 * 3600)
        old = [d.offer(event(seq=i)) for i in range(10)]  # no await: nothing consumed
        live = event(seq=10).model_copy(
            update={"event_time": event().event_time + timedelta(hours=2, minutes=30)})
        await d.start()
        assert d.offer(live)
        await d.aclose(drain_timeout_s=30)
        return d, old

    d, old = asyncio.run(main())
    assert old == [True] * 10  # skipped, not dropped
    st = d.stats[target.url]
    assert (st.too_old, st.dropped, st.delivered) == (10, 0, 1)
    assert [b["seq"] for b in hook.bodies["/ok"]] == [10]


def test_no_age_limit_sends_old_events() -> None:
    d = WebhookDispatcher([WebhookTarget("https://example.invalid/x", "json")], SH,
                          max_age_s=0, clock=lambda: 4e9)
    assert d.offer(event())
    assert d.stats["https://example.invalid/x"].too_old == 0
    assert d.queues["https://example.invalid/x"].qsize() == 1
