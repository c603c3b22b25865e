"""Root of the cityops exception hierarchy.

    CityopsError
    ├── core.exceptions.SettingsError          a setting is invalid; names the variable
    ├── core.exceptions.RegistryError          the site registry failed validation
    ├── deploy.exceptions.BrokerError          the local Kafka broker could not start/stop
    ├── ingest.exceptions.IngestError          producers, replay, HTTP intake
    ├── streams.exceptions.StreamsError        the Faust pipeline
    └── warehouse.exceptions.WarehouseError    ClickHouse backends, migrations, queries

Third-party errors (Kafka, ClickHouse, HTTP) are converted at the boundary into these, so a
caller never has to catch a driver's exception.
"""


class CityopsError(Exception):
    """Base class of every error cityops raises on purpose."""

    code: str = "cityops_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
