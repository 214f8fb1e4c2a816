"""The README's layer table is true of the code: read both, and compare.

Every module of src/ is in the table once; a module imports only modules of its own
layer or of the layers below it (every import counts: at the top, in a function, or
only for type checking); and no modules import each other in a circle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = "pyfunc_ensembler"
OURS = (PACKAGE, "pyfunc_ensembler_runner")  # the package names our imports begin with


def module_name(path: Path) -> str:
    """``pyfunc_ensembler.batch.job`` -> ``batch.job``; the package itself is ``__init__``."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    if parts[0] != PACKAGE:
        return ".".join(parts)
    return ".".join(parts[1:]) or "__init__"


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SRC.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """The modules of ours that `path` imports, by their table names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from pyfunc_ensembler import batch` imports the submodule `batch`.
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [n if _ours(n, known) else node.module for n in names]
        else:
            continue
        found.update(_table_name(name) for name in names if name.startswith(OURS))
    return found & known


def _table_name(dotted: str) -> str:
    if dotted == PACKAGE:
        return "__init__"
    return dotted.removeprefix(PACKAGE + ".")


def _ours(dotted: str, known: set[str]) -> bool:
    return _table_name(dotted) in known


def layers() -> list[list[str]]:
    """The README's table, lowest layer first: the modules column of each row."""
    text = (ROOT / "README.md").read_text()
    table = text.split("## Developing", 1)[1].split("| layer |", 1)[1].split("\n\n", 1)[0]
    rows = table.splitlines()[2:]  # after the header's rest and the |---| line
    return [re.findall(r"`([^`]+)`", row.split("|")[2]) for row in reversed(rows)]


def test_every_module_is_in_the_layer_table_once() -> None:
    listed = [name for layer in layers() for name in layer]
    assert sorted(listed) == sorted(modules())


def test_no_module_imports_a_layer_above_its_own() -> None:
    level = {name: index for index, layer in enumerate(layers()) for name in layer}
    known = set(modules())
    upward = [
        f"{name} (layer {level[name]}) imports {other} (layer {level[other]})"
        for name, path in modules().items()
        for other in sorted(imports(path, known))
        if level.get(other, -1) > level.get(name, -1)
    ]
    assert not upward


def test_no_modules_import_each_other_in_a_circle() -> None:
    known = set(modules())
    graph = {name: imports(path, known) - {name} for name, path in modules().items()}
    assert not circles(graph)


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each module that is on one (depth-first search)."""
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            found.append([*path[path.index(name) :], name])
            return
        if name in done:
            return
        for other in sorted(graph[name]):
            visit(other, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    return found


def test_the_checks_see_a_circle_and_a_sub_module_import(tmp_path: Path) -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]
    module = tmp_path / "m.py"
    module.write_text(
        "import logging\nfrom typing import TYPE_CHECKING\n"
        "from pyfunc_ensembler import logging as log, __version__\n"
        "if TYPE_CHECKING:\n    from pyfunc_ensembler.core import Core\n"
        "def f():\n    import pyfunc_ensembler.batch.job\n"
    )
    known = {"__init__", "logging", "core", "batch.job"}
    assert imports(module, known) == {"__init__", "logging", "core", "batch.job"}
