"""The package keeps its shape: layers that import only downwards, no import cycle, and no
function longer than a screen and a half. A guard in the suite, so that the next feature
cannot quietly undo it. Modules are cut by subject, not by length: their size is not capped."""

from __future__ import annotations

import ast
import io
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

import fashionmlp

PACKAGE = Path(fashionmlp.__file__).resolve().parent
ROOT = PACKAGE.parent.parent
#: The longest function body allowed, in code lines (docstring, comments and blanks left out).
MAX_BODY_LINES = 100


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
        module.write("\nfrom .train import fit  # a record climbing up to the loop\n")
    broken = lint_imports(ROOT / "pyproject.toml", tmp_path)
    assert broken.returncode != 0
    assert "fashionmlp.records is not allowed to import fashionmlp.train" in broken.stdout


def imports(package: Path) -> dict[str, set[str]]:
    """Each module's imports of the package's own modules, type-only ones included."""
    files = {
        path: ".".join(path.relative_to(package.parent).with_suffix("").parts)
        for path in package.rglob("*.py")
    }
    modules = {name.removesuffix(".__init__") for name in files.values()}
    edges: dict[str, set[str]] = {}
    for path, name in files.items():
        here = name.removesuffix(".__init__")
        base = here if path.name == "__init__.py" else here.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                parts = base.split(".")[: len(base.split(".")) - node.level + 1]
                target = ".".join(parts + ([node.module] if node.module else []))
                named = [f"{target}.{alias.name}" for alias in node.names]
                for module in [target, *named] if node.module else named:
                    if module in modules and module != here:
                        edges.setdefault(here, set()).add(module)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(group)

    for node in list(edges):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_one_that_imports_it_back(tmp_path: Path) -> None:
    assert cycles(imports(PACKAGE)) == []
    copy = tmp_path / "fashionmlp"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "config.py", "a") as module:  # type-only, and still a cycle
        module.write("\nif TYPE_CHECKING:\n    from .data import Splits\n")
    assert any({"fashionmlp.config", "fashionmlp.data"} <= group for group in cycles(imports(copy)))


def code_lines(text: str) -> set[int]:
    """The lines of ``text`` holding code: not blank, not only a comment."""
    skip = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type not in skip and token.type != tokenize.ENDMARKER:
            lines.update(range(token.start[0], token.end[0] + 1))
    return lines


def long_functions(package: Path, limit: int) -> list[tuple[int, str]]:
    found = []
    for path in sorted(package.rglob("*.py")):
        text = path.read_text()
        code = code_lines(text)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                    body = body[1:]  # the docstring
                if body:
                    span = range(body[0].lineno, (body[-1].end_lineno or body[-1].lineno) + 1)
                    lines = len(code.intersection(span))
                    if lines > limit:
                        found.append((lines, f"{path.relative_to(package)}:{node.name}"))
    return found


def test_no_function_body_is_longer_than_a_screen_and_a_half() -> None:
    assert long_functions(PACKAGE, MAX_BODY_LINES) == []
    longest = max(lines for lines, _ in long_functions(PACKAGE, 0))
    assert long_functions(PACKAGE, longest - 1) != []  # the guard sees the longest one
