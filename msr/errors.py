"""Errors that are the user's to fix: printed as one line, never as a traceback."""


class UserError(Exception):
    """A mistake in the command line, the config or the input files."""


class ConfigError(UserError):
    """A config value that is out of range or of the wrong kind."""

    def __init__(self, key: str, value, allowed: str):
        super().__init__(f"{key}={value!r} is not allowed: {allowed}")
        self.key = key
        self.value = value


class TrainingFailed(Exception):
    """Training cannot go on (for example, the loss is no longer a number)."""
