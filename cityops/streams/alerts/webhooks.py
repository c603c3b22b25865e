"""Alert delivery to webhooks: generic JSON, WeCom (企业微信) and DingTalk (钉钉) markdown bots.

Each webhook has its own bounded queue and worker task: ``offer`` never blocks and never
raises — when a queue is full the event is dropped and counted — so a failing or slow
webhook can never stall the stream processor or the other webhooks. Delivery retries with
exponential backoff (tenacity) on transport errors, HTTP 5xx / 429, and the bots' non-zero
``errcode`` (they answer HTTP 200 with an error code, e.g. when rate limited); other 4xx
answers are permanent failures.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import httpx
import structlog
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from cityops.streams.records import AlertEvent

log = structlog.get_logger(__name__)

Style = Literal["json", "wecom", "dingtalk"]
SEVERITY_ZH = {"info": "提示", "warning": "预警", "major": "严重", "critical": "紧急"}
KIND_ZH = {"fired": "触发", "severity_changed": "级别变化", "acknowledged": "已确认",
           "escalated": "升级", "cleared": "解除"}


class WebhookDeliveryError(Exception):
    """A delivery attempt failed; ``retryable`` says whether trying again can help."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class _Retryable(WebhookDeliveryError):
    pass


@dataclass(frozen=True)
class WebhookTarget:
    """One webhook URL and the payload style it expects."""

    url: str
    style: Style = "json"

    @classmethod
    def parse(cls, spec: str) -> WebhookTarget:
        """``[wecom+|dingtalk+|json+]https://…``; without a prefix the style follows the host
        (qyapi.weixin.qq.com → WeCom, oapi.dingtalk.com → DingTalk, otherwise JSON)."""
        for style in ("wecom", "dingtalk", "json"):
            if spec.startswith(f"{style}+"):
                return cls(spec[len(style) + 1:], style)
        host = urlparse(spec).hostname or ""
        if host.endswith("weixin.qq.com"):
            return cls(spec, "wecom")
        if host.endswith("dingtalk.com"):
            return cls(spec, "dingtalk")
        return cls(spec, "json")


def utc_offset_label(moment: datetime) -> str:
    """``UTC+8`` for a time in UTC+08:00: how a duty officer reads the zone of a time."""
    offset = moment.utcoffset() or timedelta(0)
    hours = offset.total_seconds() / 3600
    return "UTC" if hours == 0 else f"UTC{hours:+g}"


def markdown_text(event: AlertEvent, tz: ZoneInfo) -> tuple[str, str]:
    """(title, markdown body) for a duty officer's phone: Chinese first, key facts only,
    times in the district's zone ``tz``."""
    sev = event.severity
    title = (f"[{SEVERITY_ZH.get(sev, sev)} {sev}] {KIND_ZH.get(event.kind.value, '')} "
             f"{event.rule_id} {event.subject}")
    local = event.event_time.astimezone(tz)
    when = local.strftime("%Y-%m-%d %H:%M:%S")
    lines = [f"**{title}**", f"> {event.message}"]
    if event.value is not None:
        thr = "" if event.threshold is None else f" (阈值 threshold {event.threshold:g})"
        lines.append(f"> 数值 value: {event.value:g}{thr}")
    if event.escalation_level:
        lines.append(f"> 升级 escalation level: {event.escalation_level}")
    if event.actor:
        lines.append(f"> 确认人 by: {event.actor}")
    lines.append(f"> 时间 time: {when} ({utc_offset_label(local)})")
    lines.append(f"> alert {event.alert_id} #{event.seq} · {event.state.value}")
    return title, "\n".join(lines)


def payload(event: AlertEvent, style: Style, tz: ZoneInfo) -> dict[str, Any]:
    """Request body for one event in the target's style (bots' text shows times in ``tz``)."""
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


class WebhookDispatcher:
    """Bounded, non-blocking fan-out of alert events to webhooks, with retries and backoff."""

    def __init__(self, targets: list[WebhookTarget], *, tz: ZoneInfo, timeout_s: float = 5.0,
                 attempts: int = 4, queue_size: int = 1000, backoff_initial_s: float = 0.5,
                 backoff_max_s: float = 30.0) -> None:
        self.targets = list(targets)
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

    async def start(self) -> None:
        """Open the HTTP client and one worker task per webhook."""
        self._client = httpx.AsyncClient(timeout=self.timeout_s)
        self._tasks = [asyncio.create_task(self._worker(t), name=f"webhook:{t.url}")
                       for t in self.targets]

    def offer(self, event: AlertEvent) -> bool:
        """Queue an event for every webhook; False if any queue was full (event dropped)."""
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
            resp = await self._client.post(target.url, json=body)
        except httpx.HTTPError as exc:  # transport problems and timeouts
            raise _Retryable(f"{type(exc).__name__}: {exc}", True) from None
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
            log.warning("webhook_failed", url=target.url, alert_id=event.alert_id,
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
