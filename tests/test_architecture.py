"""The one-way data flow: a stage may import only earlier stages (docs/STYLE.md,
docs/ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import fleetplan

PKG = Path(fleetplan.__file__).parent
# Stage order; a module may import its own stage and any stage listed before it.
ORDER = ["errors", "catalog", "workload", "perf", "sim", "calibrate", "plan", "report", "cli"]


def _stage(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "fleetplan" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return out


def test_imports_point_one_way() -> None:
    bad: list[str] = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        own = rel.parts[0].removesuffix(".py")
        if own not in ORDER:
            continue
        for mod in _imports(path):
            dep = _stage(mod)
            if dep is None or dep not in ORDER:
                continue
            if ORDER.index(dep) > ORDER.index(own):
                bad.append(f"{rel} imports {mod} ({own} must not depend on later stage {dep})")
    assert not bad, "\n".join(bad)


def test_every_package_module_is_in_a_stage() -> None:
    top = {p.name.removesuffix(".py") for p in PKG.iterdir() if not p.name.startswith("_")}
    top -= {"py.typed"}
    assert top <= set(ORDER), f"unplaced modules: {top - set(ORDER)}"
