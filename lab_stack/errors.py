"""The lab stack's one error family.

Every error the lab stack raises on purpose derives from :class:`LabError`, so a caller can catch
the whole family with one ``except``. Messages say what failed, with which values (URL, query,
timeout), and end with ``Hint: ...`` saying what to do next.

Tree::

    LabError
    ├── ConfigError            a setting, config file or rules file was rejected
    │   └── PromtoolError      promtool/amtool refused a file (carries their message)
    ├── BackendError           a backend could not be used at all
    │   ├── BinaryNotFound     a component's binary is not installed
    │   └── EngineUnavailable  no Docker-compatible container engine answers
    ├── StartupError           a component did not become ready in time (carries its last log lines)
    ├── NotRunning             the stack (or a component) is not running
    └── ClientError            an HTTP call to a backend failed
        ├── BackendUnreachable the backend did not answer (connection refused, timeout)
        ├── QueryError         the backend answered with an error status (bad query, 4xx/5xx)
        └── NotFound           the backend answered 404 for an object (trace id, ...)
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendUnreachable",
    "BinaryNotFound",
    "ClientError",
    "ConfigError",
    "EngineUnavailable",
    "LabError",
    "NotFound",
    "NotRunning",
    "PromtoolError",
    "QueryError",
    "StartupError",
]


class LabError(Exception):
    """Root of every error the lab stack raises on purpose."""


class ConfigError(LabError):
    """A setting, a configuration file or a rules file was rejected."""


class PromtoolError(ConfigError):
    """``promtool`` or ``amtool`` refused a file; the message carries their output."""

    def __init__(self, message: str, *, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class BackendError(LabError):
    """A backend cannot be used at all on this machine."""


class BinaryNotFound(BackendError):
    """A component's executable is not installed (the message names the package to install)."""


class EngineUnavailable(BackendError):
    """No Docker-compatible container engine answers."""


class StartupError(LabError):
    """A component did not become ready within its timeout; notes carry its last log lines."""


class NotRunning(LabError):
    """The stack, or the component asked for, is not running."""


class ClientError(LabError):
    """An HTTP call to a backend failed."""

    def __init__(self, message: str, *, url: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class BackendUnreachable(ClientError):
    """The backend did not answer at all (connection refused, timeout)."""


class QueryError(ClientError):
    """The backend answered with an error status, usually a rejected query."""


class NotFound(ClientError):
    """The backend answered 404 for the object asked for (a trace id, a dashboard uid, ...)."""
