"""Errors of the deployment helpers. kafka-python errors are converted into these where the
helpers call Kafka, so the CLI never catches a ``kafka.errors`` class.

    BrokerError                 the local Kafka broker could not be fetched, started or stopped
    ├── BrokerUnreachable       no broker answered at the bootstrap address
    └── TopicSetupError         the brokers refused to create or list the platform topics
                                (replication above the broker count, authorization, policy)
"""

from cityops.exceptions import CityopsError


class BrokerError(CityopsError):
    """The local Kafka broker could not be fetched, started, reached or stopped."""

    code = "broker_error"


class BrokerUnreachable(BrokerError):
    """No broker answered at the bootstrap address within the request timeout."""

    code = "broker_unreachable"


class TopicSetupError(BrokerError):
    """The brokers answered but refused the topics; ``kafka_error`` names Kafka's error."""

    code = "topic_setup_failed"

    def __init__(self, message: str, *, kafka_error: str) -> None:
        super().__init__(message)
        self.kafka_error = kafka_error
