"""The code's layout: no import circles, and mailer/'s modules in their rooms (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mailer", "parsing", "routing", "sla", "templates")
# What stays at the top of mailer/: the flow, the config, and everything a stage needs built from it.
MAILER_TOP = {"__init__", "__main__", "app", "config", "config_transport", "pipeline"}


def module_names() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue  # Alembic loads these by path
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """Every project module this one imports, at the top or inside a function (not for type checking only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in
                 ast.unparse(node.test) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & known.keys()
            found |= submodules
            if len(submodules) < len(node.names):  # `from package import submodule` needs the package only to hold it
                found.add(node.module)
    return {name for name in found if name in known}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_through_others() -> None:
    known = module_names()
    graph = {name: imports_of(path, known) - {name} for name, path in known.items()}
    assert circles(graph) == []


def test_mailer_top_level_holds_only_the_flow_and_the_config() -> None:
    top = {path.stem for path in (ROOT / "mailer").glob("*.py")}
    assert top <= MAILER_TOP, f"put {sorted(top - MAILER_TOP)} in the package of its role"
    for package in ("cli", "demo", "ledger", "runtime", "stages", "transport"):
        assert (ROOT / "mailer" / package / "__init__.py").exists()


@pytest.mark.parametrize("module", ["mailer.cli", "mailer.demo.run", "mailer.stages.runner", "mailer.config",
                                    "sla.calendar"])
def test_entry_modules_import_alone(module: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
