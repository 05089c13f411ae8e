"""The shared Typer application and consoles that command modules register on."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import typer
import typer.core
from rich.console import Console

from fleetplan.errors import UsageError

__all__ = ["ENGINES", "app", "check_writable", "console", "err_console"]

#: The catalog's engines, for the help of `--engine` (reading the catalog would slow every
#: command's start; tests/cli/test_cli.py checks that this list is the catalog's).
ENGINES = ("vllm", "sglang", "trtllm", "tgi", "llamacpp", "transformers")


def _plain_help_names() -> None:
    """Make `--help` name parameters as a user types them (checked by tests/cli/test_cli.py).

    Typer's Rich help prints a type after every option, flags included (`--json <bool>`,
    `--help <bool>`), as if a flag took a value, and writes a required argument in usage
    lines as `{name}`. Here a flag shows no type (other options keep theirs: `<int>`,
    `<path>`, ...) and an argument reads as in click: `NAME` when required, `[NAME]` when
    optional, `NAME...` when it takes several, also in the Arguments panel and in errors.
    """
    option, argument = typer.core.TyperOption, typer.core.TyperArgument
    typed = getattr(option, "display_type_rich", None)
    if typed is None or not hasattr(argument, "_usage_display_name"):
        return  # a Typer without these hooks: its own help, unchanged

    def display_type_rich(self: typer.core.TyperOption, ctx: typer.Context) -> str | None:
        if self.metavar is None and (self.is_flag or self.count):
            return None  # a flag takes no value
        shown: str | None = typed(self, ctx)
        return shown

    def display_name_raw(self: typer.core.TyperArgument) -> str:
        return self.metavar if self.metavar is not None else (self.name or "").upper()

    def usage_name(self: typer.core.TyperArgument) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + "..." if self.nargs != 1 else name

    option.display_type_rich = display_type_rich  # type: ignore[method-assign,assignment]
    argument.display_name_raw = property(display_name_raw)  # type: ignore[method-assign,assignment]
    argument._usage_display_name = usage_name  # type: ignore[method-assign]


_plain_help_names()

app = typer.Typer(
    name="fleetplan",
    help="Capacity planning, performance modelling and simulation for LLM inference fleets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(width=140)
err_console = Console(stderr=True, width=140)


def writing(path: Path, flag: str, write: Callable[[], object]) -> None:
    """Run `write` (which writes `path`); an operating-system error (a full disk, a read-only
    or special file system, permissions `check_writable` could not foresee) is a `UsageError`
    naming the flag and the path, not a traceback."""
    try:
        write()
    except OSError as e:
        raise UsageError(f"cannot write '{path}': {e.strerror or e}", where=flag) from e


def write_text(path: Path, text: str, flag: str) -> None:
    """Write `text` (UTF-8) to the output file `path` given by `flag` (see `writing`)."""
    writing(path, flag, lambda: path.write_text(text, encoding="utf-8"))


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
