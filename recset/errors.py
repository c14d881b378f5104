"""Exception and warning hierarchy.

Every error recset raises derives from :class:`RecsetError`, so a host can catch them all.
The dual bases (``ValueError``, ``AttributeError``...) let code that predates recset catch
them by the usual built-in type, as scikit-learn does with ``NotFittedError``.
"""

from __future__ import annotations


class RecsetError(Exception):
    """Base class of every error raised by recset."""


class ConfigError(RecsetError, ValueError):
    """A configuration file or value is invalid (names the file, key and allowed values)."""


class ParameterTypeError(ConfigError, TypeError):
    """An argument has the wrong type (also a ``TypeError``, for code that catches that)."""


class DataError(RecsetError, ValueError):
    """Input data is missing, unreadable or malformed (names the file and rows)."""


class StorageError(RecsetError, RuntimeError):
    """The store cannot be opened, read or written (e.g. a schema version mismatch)."""


class NotFittedError(RecsetError, AttributeError):
    """A component was used before ``fit`` was called."""


class DataWarning(UserWarning):
    """Input data was accepted but looks suspicious."""


class ParameterWarning(UserWarning):
    """A parameter was accepted but converted or ignored."""
