"""Alert delivery to webhooks: generic JSON, WeCom (企业微信) and DingTalk (钉钉) markdown bots.

Each webhook has its own bounded queue and worker task: ``offer`` never blocks and never
raises — when a queue is full the event is dropped and counted — so a failing or slow
webhook can never stall the stream processor or the other webhooks. Delivery retries with
exponential backoff (tenacity) on transport errors, HTTP 5xx / 429, and the bots' non-zero
``errcode`` (they answer HTTP 200 with an error code, e.g. when rate limited); other 4xx
answers are permanent failures.

An event whose event time is older than ``max_age_s`` by the wall clock is not sent (counted
``too_old``): a backfill or a long catch-up replays history through the alert engine, its
alerts belong in the warehouse and on the boards, not on the on-call's phone, and a flood of
them would fill the queues and push out live alerts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal
from urllib.parse import quote_plus, urlparse

import httpx
import structlog
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from cityops.core.secrets import url_label
from cityops.streams.alerts.machine import is_history
from cityops.streams.records import AlertEvent

log = structlog.get_logger(__name__)

Style = Literal["json", "wecom", "dingtalk"]
SEVERITY_ZH = {"info": "提示", "warning": "预警", "major": "严重", "critical": "紧急"}
KIND_ZH = {"fired": "触发", "severity_changed": "级别变化", "acknowledged": "已确认",
           "escalated": "升级", "cleared": "解除", "reminded": "仍在持续"}


class WebhookDeliveryError(Exception):
    """A delivery attempt failed; ``retryable`` says whether trying again can help."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class _Retryable(WebhookDeliveryError):
    pass


@dataclass(frozen=True)
class WebhookTarget:
    """One webhook URL and the payload style it expects.

    The URL is a secret (WeCom's ``key=``, DingTalk's ``access_token=``): it is never shown;
    logs, metrics and ``/health`` name the target by ``label`` (scheme and host)."""

    url: str = field(repr=False)
    style: Style = "json"
    #: DingTalk "加签" secret (``SEC…``): each request carries ``timestamp`` and ``sign``
    secret: str = field(default="", repr=False)

    @property
    def label(self) -> str:
        return f"{self.style}:{url_label(self.url)}"

    def request_url(self, now_ms: int | None = None) -> str:
        """The URL to post to; signed (HMAC-SHA256 of ``"{timestamp}\n{secret}"``, DingTalk's
        custom-robot security setting) when the target has a secret."""
        if not self.secret:
            return self.url
        ts = str(now_ms if now_ms is not None else int(time.time() * 1000))
        mac = hmac.new(self.secret.encode(), f"{ts}\n{self.secret}".encode(), hashlib.sha256)
        sign = quote_plus(base64.b64encode(mac.digest()))
        sep = "&" if "?" in self.url else "?"
        return f"{self.url}{sep}timestamp={ts}&sign={sign}"

    @classmethod
    def parse(cls, spec: str) -> WebhookTarget:
        """``[wecom+|dingtalk+|json+]https://…[#secret=SEC…]``; without a prefix the style
        follows the host (qyapi.weixin.qq.com → WeCom, oapi.dingtalk.com → DingTalk,
        otherwise JSON). A ``#secret=`` fragment is DingTalk's signing secret."""
        spec, _, fragment = spec.partition("#")
        secret = fragment.removeprefix("secret=") if fragment.startswith("secret=") else ""
        for style in ("wecom", "dingtalk", "json"):
            if spec.startswith(f"{style}+"):
                return cls(spec[len(style) + 1:], style, secret)
        host = urlparse(spec).hostname or ""
        if host.endswith("weixin.qq.com"):
            return cls(spec, "wecom", secret)
        if host.endswith("dingtalk.com"):
            return cls(spec, "dingtalk", secret)
        return cls(spec, "json", secret)


def utc_offset_label(local: datetime) -> str:
    """``UTC+8`` (or ``UTC+5:30``, ``UTC``) for a local time: how a duty officer reads its zone."""
    off = local.utcoffset() or timedelta(0)
    minutes = int(off.total_seconds() // 60)
    if minutes == 0:
        return "UTC"
    sign, minutes = ("+" if minutes >= 0 else "-"), abs(minutes)
    return f"UTC{sign}{minutes // 60}" + (f":{minutes % 60:02d}" if minutes % 60 else "")


def markdown_text(event: AlertEvent, tz: tzinfo) -> tuple[str, str]:
    """(title, markdown body) for a duty officer's phone: Chinese first, key facts only;
    the time in the district's zone (``tz``, from settings) with its offset that day."""
    sev = event.severity
    title = (f"[{SEVERITY_ZH.get(sev, sev)} {sev}] {KIND_ZH.get(event.kind.value, '')} "
             f"{event.rule_id} {event.subject}")
    local = event.event_time.astimezone(tz)
    when = f"{local:%Y-%m-%d %H:%M:%S} ({utc_offset_label(local)})"
    lines = [f"**{title}**", f"> {event.message}"]
    if event.value is not None:
        thr = "" if event.threshold is None else f" (阈值 threshold {event.threshold:g})"
        lines.append(f"> 数值 value: {event.value:g}{thr}")
    if event.escalation_level:
        lines.append(f"> 升级 escalation level: {event.escalation_level}")
    if event.actor:
        lines.append(f"> 确认人 by: {event.actor}")
    lines.append(f"> 时间 time: {when}")
    lines.append(f"> alert {event.alert_id} #{event.seq} · {event.state.value}")
    return title, "\n".join(lines)


def payload(event: AlertEvent, style: Style, tz: tzinfo) -> dict[str, Any]:
    """Request body for one event in the target's style."""
    if style == "json":
        return event.model_dump(mode="json")
    title, text = markdown_text(event, tz)
    if style == "wecom":
        return {"msgtype": "markdown", "markdown": {"content": text}}
    return {"msgtype": "markdown", "markdown": {"title": title, "text": text}}


@dataclass
class DeliveryStats:
    """Counters per webhook (exported as metrics by the worker)."""

    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    attempts: int = 0
    too_old: int = 0


class WebhookDispatcher:
    """Bounded, non-blocking fan-out of alert events to webhooks, with retries and backoff."""

    def __init__(self, targets: list[WebhookTarget], tz: tzinfo, *, timeout_s: float = 5.0,
                 attempts: int = 4, queue_size: int = 1000, backoff_initial_s: float = 0.5,
                 backoff_max_s: float = 30.0, max_age_s: float = 0.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.targets = list(targets)
        self.max_age_s = max_age_s  # 0: every event is sent, however old
        self.clock = clock
        self.tz = tz
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.queues: dict[str, asyncio.Queue[AlertEvent]] = {
            t.url: asyncio.Queue(maxsize=queue_size) for t in self.targets}
        self.stats: dict[str, DeliveryStats] = {t.url: DeliveryStats() for t in self.targets}
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    def labelled_stats(self) -> dict[str, DeliveryStats]:
        """Stats keyed by a printable label (never the URL); duplicates get ``#n``."""
        out: dict[str, DeliveryStats] = {}
        for t in self.targets:
            label = t.label
            if label in out:
                label = f"{label}#{len(out)}"
            out[label] = self.stats[t.url]
        return out

    async def start(self) -> None:
        """Open the HTTP client and one worker task per webhook."""
        self._client = httpx.AsyncClient(timeout=self.timeout_s)
        self._tasks = [asyncio.create_task(self._worker(t), name=f"webhook:{t.label}")
                       for t in self.targets]

    def offer(self, event: AlertEvent) -> bool:
        """Queue an event for every webhook; False if any queue was full (event dropped).
        An event older than ``max_age_s`` is not queued and counted ``too_old``."""
        if is_history(event.event_time.timestamp(), self.clock(), self.max_age_s):
            for t in self.targets:
                self.stats[t.url].too_old += 1
            return True
        ok = True
        for t in self.targets:
            try:
                self.queues[t.url].put_nowait(event)
            except asyncio.QueueFull:
                self.stats[t.url].dropped += 1
                ok = False
        return ok

    async def _worker(self, target: WebhookTarget) -> None:
        queue = self.queues[target.url]
        while True:
            event = await queue.get()
            try:
                await self._deliver(target, event)
            finally:
                queue.task_done()

    async def _post(self, target: WebhookTarget, body: dict[str, Any]) -> None:
        assert self._client is not None
        self.stats[target.url].attempts += 1
        try:
            resp = await self._client.post(target.request_url(), json=body)
        except httpx.HTTPError as exc:  # transport problems and timeouts
            # the class name only: httpx puts the URL (with its access key) in the text
            raise _Retryable(type(exc).__name__, True) from None
        if resp.status_code == 429 or resp.status_code >= 500:
            raise _Retryable(f"HTTP {resp.status_code}", True)
        if resp.status_code >= 400:
            raise WebhookDeliveryError(f"HTTP {resp.status_code}", False)
        if target.style != "json":
            try:
                errcode = resp.json().get("errcode", 0)
            except ValueError:
                errcode = 0
            if errcode:
                raise _Retryable(f"errcode {errcode}", True)

    async def _deliver(self, target: WebhookTarget, event: AlertEvent) -> None:
        body = payload(event, target.style, self.tz)
        stats = self.stats[target.url]
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=self.backoff_initial_s,
                                      max=self.backoff_max_s),
                retry=retry_if_exception_type(_Retryable), reraise=True,
            ):
                with attempt:
                    await self._post(target, body)
        except (WebhookDeliveryError, RetryError) as exc:
            stats.failed += 1
            log.warning("webhook_failed", webhook=target.label, alert_id=event.alert_id,
                        seq=event.seq, error=str(exc))
            return
        stats.delivered += 1

    async def drain(self) -> None:
        """Wait until every queued event was delivered or given up on."""
        await asyncio.gather(*(q.join() for q in self.queues.values()))

    async def aclose(self, drain_timeout_s: float = 5.0) -> None:
        """Deliver what is queued (bounded wait), then stop workers and close the client."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), drain_timeout_s)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()
