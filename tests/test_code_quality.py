"""ruff (lint + format) and the import-linter contracts are part of the test suite."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_ruff_lint_clean():
    r = _run(str(BIN / "ruff"), "check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format_clean():
    r = _run(str(BIN / "ruff"), "format", "--check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_import_contracts_kept():
    r = _run(str(BIN / "lint-imports"))
    assert r.returncode == 0, r.stdout + r.stderr


def _cycles(*packages: str) -> list[tuple[str, str]]:
    import grimp  # installed with import-linter

    graph = grimp.build_graph(*packages, exclude_type_checking_imports=True)
    found = set()
    for a in graph.modules:
        for b in graph.find_modules_directly_imported_by(a):
            if b in graph.modules and graph.find_shortest_chain(importer=b, imported=a):
                found.add(tuple(sorted((a, b))))
    return sorted(found)


def test_no_import_circles():
    """Function-level (lazy) imports count too: a circle is a circle, however it is reached."""
    assert _cycles("workflows", "app") == []


def test_the_circle_check_can_fail(tmp_path, monkeypatch):
    for name, imports in (("a", "b"), ("b", "a")):
        (tmp_path / "circle").mkdir(exist_ok=True)
        (tmp_path / "circle" / f"{name}.py").write_text(
            f"def f():\n    from circle import {imports}\n"
        )
    (tmp_path / "circle" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _cycles("circle") == [("circle.a", "circle.b")]


def test_modules_and_functions_stay_small():
    import ast

    for path in (ROOT / "workflows" / "cli").glob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path
    for path in (ROOT / "workflows" / "exporters").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                length = node.end_lineno - node.lineno + 1
                assert length <= 80, f"{path.name}: {node.name} is {length} lines"
