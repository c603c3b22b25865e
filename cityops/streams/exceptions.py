"""Errors of the Faust pipeline (``cityops.streams``).

    StreamsError                 any failure of the streams worker
    ├── WorkerStartError         the worker could not start (port busy, broker unreachable)
    └── AlertCommandError        an alert command (ack / list) could not be carried out

Kafka (aiokafka / kafka-python) errors are converted to these at the agent boundary; inside an
agent no exception escapes: bad records are dead-lettered and counted instead.
"""

from __future__ import annotations

from cityops.exceptions import CityopsError


class StreamsError(CityopsError):
    code = "streams_error"


class WorkerStartError(StreamsError):
    code = "worker_start"


class AlertCommandError(StreamsError):
    code = "alert_command"
