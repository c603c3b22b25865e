"""Errors of the shared core (settings, registry). A broken feed contract is not an error
but a dead letter with a reason code (``core.contract``)."""

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


class AuthError(CityopsError):
    """Credentials are missing, malformed or refused; never carries the secret itself."""

    code = "auth"
