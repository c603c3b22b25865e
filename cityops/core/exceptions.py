"""Errors of the shared core (settings, registry, feed contracts)."""

from cityops.exceptions import CityopsError


class SettingsError(CityopsError):
    """A setting is invalid; the message names the environment variable and allowed values."""

    code = "bad_setting"


class RegistryError(CityopsError):
    """The site registry failed validation; the message names file, entry and reason."""

    code = "bad_registry"

    def __init__(self, file: str, entry: str, reason: str) -> None:
        self.file, self.entry, self.reason = file, entry, reason
        super().__init__(f"{file}: {entry}: {reason}")


class FeedError(CityopsError):
    """An event broke its feed contract; ``reason`` is a stable machine-readable code."""

    code = "bad_event"

    def __init__(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


class AuthError(CityopsError):
    """Credentials are missing, malformed or refused; never carries the secret itself."""

    code = "auth"
