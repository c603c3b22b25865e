"""Errors of the deployment helpers."""

from cityops.exceptions import CityopsError


class BrokerError(CityopsError):
    """The local Kafka broker could not be fetched, started, reached or stopped."""

    code = "broker_error"
