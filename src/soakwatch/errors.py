"""The exceptions of soakwatch: one base class, a few kinds. Library code only raises these;
each CLI's ``main()`` turns them into a message on stderr and an exit code."""

from __future__ import annotations

__all__ = ["ConfigError", "SoakwatchError", "SourceError", "UsageError"]


class SoakwatchError(Exception):
    """Base class of every error soakwatch raises on purpose. Exit code 2 at the CLI."""

    exit_code = 2


class ConfigError(SoakwatchError):
    """A configuration value is wrong. The message names the key path and where it came from
    (a file or an environment variable)."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        self.source = source
        self.key = key
        self.reason = message
        where = ": ".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class UsageError(SoakwatchError):
    """The command line was wrong (a bad flag value, a missing argument)."""


class SourceError(SoakwatchError):
    """A data source (Prometheus HTTP API, a run directory) could not be read. Never a pass."""
