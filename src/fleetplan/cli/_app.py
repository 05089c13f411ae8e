"""The shared Typer application and consoles that command modules register on."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

from fleetplan.errors import UsageError

__all__ = ["app", "check_writable", "console", "err_console"]

app = typer.Typer(
    name="fleetplan",
    help="Capacity planning, performance modelling and simulation for LLM inference fleets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(width=140)
err_console = Console(stderr=True, width=140)


def check_writable(path: Path | None, flag: str, suffixes: tuple[str, ...] = ()) -> None:
    """Raise `UsageError` naming `flag` unless `path` can be written as a file (checked
    before a command does its work, so a typo in an output path does not cost a run);
    `suffixes`, when given, are the file types the flag writes."""
    if path is None:
        return
    if path.is_dir():
        raise UsageError(f"'{path}' is a directory; give a file name", where=flag)
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"cannot write '{path}': no directory '{parent}'", where=flag)
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"cannot write '{path}': permission denied", where=flag)
    if suffixes and path.suffix.lower() not in suffixes:
        raise UsageError(
            f"'{path}': unknown file type '{path.suffix}'; use {', '.join(suffixes)}", where=flag)
