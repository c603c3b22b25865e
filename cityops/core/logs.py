"""Structured logging: structlog key=value on a terminal, JSON lines in services."""

from __future__ import annotations

import logging
import sys

import structlog

from cityops.core.settings import Settings

#: how kafka-python's error for a failed metadata refresh starts (``ClosingClientNoise``)
_REFRESH_FAILED = "Metadata refresh: failed"


class ClosingClientNoise(logging.Filter):
    """Drops kafka-python's error for a metadata refresh cut short by its own client's close.

    kafka-python 3 refreshes metadata in the background and logs "Metadata refresh: failed
    Transport closed for writes" when the client is closed while a refresh is in flight, or
    "Metadata refresh: failed Cancelled" when the close cancels the refresh's request (a
    lost connection fails it with its own error instead). The short-lived clients here (the
    simulator's resume read, topic checks) close right after use, and the line showed as an
    error on `make run`'s terminal at a normal start. A refresh that fails for any other
    reason is still logged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if not text.startswith(_REFRESH_FAILED):
            return True
        # only the client's own close: "Connection at host:port closed" is a broker gone
        why = text[len(_REFRESH_FAILED):].strip()
        return not ("Transport closed for writes" in why or why == "Cancelled")


class OneLineDriverErrors(logging.Filter):
    """clickhouse-driver's warnings as one line: it logs "Failed to connect to host:port" with
    the whole traceback for each host and retry, so `cityops sql --url` to a server that is
    down printed six tracebacks (636 lines) before the one line that says what failed. The
    exception's class and message stay on the line; the converted error (``warehouse``)
    still reaches the caller."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("clickhouse_driver"):
            return True  # every other traceback is kept
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def configure_logging(settings: Settings) -> None:
    """Route structlog and stdlib logging (Faust, aiokafka, kafka-python) through one format."""
    level = getattr(logging, settings.log_level)
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False) if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=shared,
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("kafka", "aiokafka", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    cluster = logging.getLogger("kafka.cluster")
    if not any(isinstance(f, ClosingClientNoise) for f in cluster.filters):
        cluster.addFilter(ClosingClientNoise())
    if not any(isinstance(f, OneLineDriverErrors) for f in handler.filters):
        # on the handler: a filter on the "clickhouse_driver" logger would miss the records
        # its child loggers (clickhouse_driver.connection) pass up
        handler.addFilter(OneLineDriverErrors())
