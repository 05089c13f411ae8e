"""Shared test helpers: run the CLI in-process and compare with golden files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from fleetplan.cli import main

# Property tests run with a fixed derandomized search so that CI is reproducible;
# `HYPOTHESIS_PROFILE=explore` searches afresh each run.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


class CLIResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*args: str) -> CLIResult:
        code = main(list(args))
        cap = capsys.readouterr()
        return CLIResult(code, cap.out, cap.err)

    return run


def check_golden(path: Path, text: str) -> None:
    """Compare `text` with the golden file; `UPDATE_GOLDEN=1` rewrites it."""
    if os.environ.get("UPDATE_GOLDEN") == "1" or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if os.environ.get("UPDATE_GOLDEN") != "1":
            pytest.fail(f"golden file {path} was missing and has been written; rerun")
    assert text == path.read_text(), f"output differs from {path} (UPDATE_GOLDEN=1 to accept)"
