"""Errors that reach the user: each says what was wrong and where.

`UsageError` is a user's mistake (a flag, a file, a name); the CLI prints it and exits with
status 2, never with a traceback. `InfeasibleError` is a well-formed request that no
configuration can meet (a latency target below the physical floor, a model or request that
does not fit the memory): exit status 1, as `fleetplan plan` exits when no candidate is
feasible.
"""

from __future__ import annotations

__all__ = ["FleetplanError", "InfeasibleError", "InputFileError", "UsageError"]


class FleetplanError(Exception):
    """Base of every error fleetplan raises on purpose."""

    exit_code = 1


class UsageError(FleetplanError):
    """A flag, argument or name the user gave is wrong. `where` names the flag or field."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class InputFileError(UsageError):
    """A user's file is malformed; names the file, the line (1-based) and the field."""

    def __init__(
        self,
        message: str,
        *,
        path: str,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.field = field
        loc = path
        if line is not None:
            loc += f", line {line}"
        if field is not None:
            loc += f", field '{field}'"
        super().__init__(message, where=loc)


class InfeasibleError(FleetplanError):
    """The request cannot be met by any configuration; the message gives the physical floor."""

    exit_code = 1
