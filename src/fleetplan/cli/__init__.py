"""The `fleetplan` command line: a thin Typer layer over the library.

Each command group lives in its own module and registers itself on `app`. Errors fleetplan
raises on purpose (`FleetplanError`) are printed as one clear message, never a traceback, with
exit status 2 for a user's mistake (`UsageError`) and 1 for a request no configuration can
meet (`InfeasibleError`).
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

# Command modules register on `app` when imported (one import per command group).
from fleetplan.cli import catalog as _catalog  # noqa: F401
from fleetplan.cli import kernels as _kernels  # noqa: F401
from fleetplan.cli import plan as _plan  # noqa: F401
from fleetplan.cli import simulate as _simulate  # noqa: F401
from fleetplan.cli import steps as _steps  # noqa: F401
from fleetplan.cli import validate as _validate  # noqa: F401
from fleetplan.cli import workload as _workload  # noqa: F401
from fleetplan.cli._app import app, err_console
from fleetplan.errors import FleetplanError

__all__ = ["app", "main", "run"]

#: The order `fleetplan --help` lists the commands in (the modules register in import order):
#: the planning commands first, then those that check the model against measurements.
COMMAND_ORDER = ("plan", "simulate", "validate", "calibrate-steps", "calibrate-kernels")


def _command_rank(c: typer.models.CommandInfo) -> int:
    name = c.name or getattr(c.callback, "__name__", "").replace("_", "-")
    return COMMAND_ORDER.index(name) if name in COMMAND_ORDER else len(COMMAND_ORDER)


app.registered_commands.sort(key=_command_rank)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fleetplan` script; returns the exit status."""
    try:
        rv = app(args=argv, standalone_mode=False)  # typer.Exit(n) comes back as n
    except FleetplanError as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        return e.exit_code
    except SystemExit as e:  # typer/click exits (--help, usage errors already printed)
        return int(e.code or 0)
    except typer.Abort as e:
        if isinstance(e.__cause__, EOFError):  # click turns any EOFError into Abort
            err_console.print("[bold red]error:[/] unexpected end of input: a truncated or "
                              f"corrupt file? ({escape(str(e.__cause__) or 'EOFError')})",
                              highlight=False)
            return 2
        return 130
    except typer.TyperException as e:  # click-style usage errors: print them, exit 2
        show = getattr(e, "show", None)
        if show is None:
            raise
        show()
        return int(getattr(e, "exit_code", 2))
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def run() -> None:
    """Console-script wrapper: exit with `main()`'s status."""
    sys.exit(main())
