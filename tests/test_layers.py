"""The package's shape: one-way imports (import-linter contracts in pyproject.toml), no
import cycle between recset modules, and no reaching into another package's private modules.

A wrong import fails here, in CI, before anyone has to notice it in review.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "recset"


def test_import_linter_contracts_hold() -> None:
    """The layers (cli | testing, eval, engine, config, personalization, ranking, recall,
    pipeline, signals, data, storage, errors) and the torch boundary."""
    cli = pytest.importorskip("importlinter.cli")
    # import-linter configures logging with ``disable_existing_loggers``: every logger that
    # exists then (recset's included) would stay disabled for the tests that run after this one
    manager = logging.Logger.manager
    before = {
        n: lg.disabled for n, lg in manager.loggerDict.items() if isinstance(lg, logging.Logger)
    }
    try:
        assert cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0
    finally:
        for name, disabled in before.items():
            logging.getLogger(name).disabled = disabled


def test_no_import_cycles() -> None:
    """No module imports, directly or through others, a module that imports it back
    (imports inside functions count: a late import does not hide a cycle)."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("recset")
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                cycles.append(f"{module} -> {' -> '.join(back)}")
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def private_reach_ins(package: Path = PACKAGE) -> list[str]:
    """``importer: imported`` for every import of a ``_private`` module of another package."""
    found = []
    for path in sorted(package.rglob("*.py")):
        module = _module_name(path, package.parent)
        own = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] != "recset":
                    continue
                for i, part in enumerate(parts):
                    if part.startswith("_") and not part.startswith("__"):
                        owner = ".".join(parts[:i])
                        if own != owner and not own.startswith(owner + "."):
                            found.append(f"{module}: {name}")
                        break
    return sorted(set(found))


def test_no_private_module_imported_across_packages() -> None:
    """A package uses another through its public ``__init__``, never its ``_private`` parts."""
    assert private_reach_ins() == []


def test_the_reach_in_check_can_fail(tmp_path: Path) -> None:
    """The scanner flags a planted reach-in (so the test above cannot pass vacuously)."""
    pkg = tmp_path / "recset"
    (pkg / "ranking").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "ranking" / "__init__.py").write_text("from recset.ranking._x import y\n")
    (pkg / "cli.py").write_text("from recset.ranking._x import y\n")
    expected = ["recset.cli: recset.ranking._x", "recset.cli: recset.ranking._x.y"]
    assert private_reach_ins(pkg) == expected
