"""The package keeps its shape: layers that import only downwards, short functions, modules
of one job. A guard in the suite, so that the next feature cannot quietly undo it."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fashionmlp

PACKAGE = Path(fashionmlp.__file__).resolve().parent
ROOT = PACKAGE.parent.parent
#: The longest function body (code lines, its docstring left out) and module allowed.
MAX_BODY_LINES = 60
MAX_MODULE_LINES = 450


def lint_imports(config: Path, root: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("lint-imports")
    if not script.exists():
        pytest.skip("import-linter is not installed (pip install 'fashionmlp[test]')")
    return subprocess.run(
        [str(script), "--config", str(config), "--no-cache"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )


def test_the_layers_contract_holds_and_fails_on_an_upward_import(tmp_path: Path) -> None:
    held = lint_imports(ROOT / "pyproject.toml", PACKAGE.parent)
    assert held.returncode == 0, held.stdout
    copy = tmp_path / "fashionmlp"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "records.py", "a") as module:
        module.write("\nfrom .fitting import fit  # a record climbing up to the loop\n")
    broken = lint_imports(ROOT / "pyproject.toml", tmp_path)
    assert broken.returncode != 0
    assert "fashionmlp.records is not allowed to import fashionmlp.train" in broken.stdout


def _bodies(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                body = body[1:]  # the docstring
            if body:
                end = body[-1].end_lineno or body[-1].lineno
                found.append((end - body[0].lineno + 1, f"{path.name}:{node.name}"))
    return found


def test_no_function_body_is_longer_than_a_screen_and_no_module_grows_past_its_job() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    long_bodies = [
        (lines, name)
        for module in modules
        for lines, name in _bodies(module)
        if lines > MAX_BODY_LINES
    ]
    assert long_bodies == []
    large = [
        (module.name, lines)
        for module in modules
        if (lines := len(module.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert large == []
