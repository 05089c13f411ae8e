"""The shared Typer application and consoles that command modules register on."""

from __future__ import annotations

import typer
from rich.console import Console

__all__ = ["app", "console", "err_console"]

app = typer.Typer(
    name="fleetplan",
    help="Capacity planning, performance modelling and simulation for LLM inference fleets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(width=140)
err_console = Console(stderr=True, width=140)
