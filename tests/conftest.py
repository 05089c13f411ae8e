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


def _close(a: Any, b: Any, rel: float, where: str = "$") -> list[str]:
    """Differences between two JSON values, floats compared to a relative tolerance."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{where}: keys differ: {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in _close(a[k], b[k], rel, f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} != {len(b)}"]
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _close(x, y, rel, f"{where}[{i}]")
        ]
    if isinstance(a, float) or isinstance(b, float):
        if (
            isinstance(a, int | float)
            and isinstance(b, int | float)
            and a == pytest.approx(b, rel=rel)
        ):
            return []
        return [f"{where}: {a!r} != {b!r}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def check_golden_json(path: Path, text: str, rel: float = 1e-9) -> None:
    """Like `check_golden`, for JSON: floats compared to `rel` (last-digit noise is not a
    change), everything else exactly."""
    if os.environ.get("UPDATE_GOLDEN") == "1" or not path.exists():
        check_golden(path, text)
        return
    diffs = _close(json.loads(path.read_text()), json.loads(text), rel)
    assert not diffs, f"output differs from {path}:\n" + "\n".join(diffs[:20])
