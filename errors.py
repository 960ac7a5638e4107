"""User-facing errors: the CLI prints these as one line and exits non-zero."""
from __future__ import annotations


class PolyvisionError(Exception):
    """Base class of errors caused by user input (files, configs, names), not by bugs."""


class DataError(PolyvisionError):
    """A data file or annotation is missing, unreadable or malformed.

    The message always starts with the offending path (or ``path: field``).
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # survives DataLoader worker pickling with its fields intact
        return (type(self), (self.path, self.reason))


class ConfigError(PolyvisionError):
    """An unknown model, backbone or head name, or a bad setting."""


class WeightsError(PolyvisionError):
    """A weights or checkpoint file is missing, unsafe or does not fit the model."""
