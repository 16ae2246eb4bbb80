"""The documentation builds offline without a warning, its examples run, and its API page
names everything. The sources are read once: the doctest builder reuses the HTML build's
doctrees (``make test`` builds the docs nowhere else)."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

import fashionmlp

DOCS = Path(__file__).resolve().parent.parent / "docs"


def build(builder: str, out: Path) -> int:
    """Sphinx's ``builder`` over the docs into ``out``; warnings are errors."""
    build_main = pytest.importorskip("sphinx.cmd.build").build_main
    doctrees = out.parent / "doctrees"  # shared: the second builder reads no source again
    return int(
        build_main(
            ["-q", "-W", "--keep-going", "-b", builder, "-d", str(doctrees), str(DOCS), str(out)]
        )
    )


@pytest.fixture(scope="module")
def built_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "html"
    assert build("html", out) == 0, "sphinx-build reported warnings or errors"
    return out


def test_the_examples_of_the_guides_and_docstrings_run(built_html: Path) -> None:
    assert build("doctest", built_html.parent / "doctest") == 0, "a doctest failed"


def test_the_api_page_documents_every_public_name(built_html: Path) -> None:
    page = (built_html / "api.html").read_text()
    anchors = set(re.findall(r'id="(fashionmlp\.[\w.]+)"', page))
    documented = {anchor.rsplit(".", 1)[1] for anchor in anchors}
    missing = [
        name for name in fashionmlp.__all__ if name != "__version__" and name not in documented
    ]
    assert missing == []


def test_every_page_of_the_toctree_is_built(built_html: Path) -> None:
    for page in (
        "index",
        "tutorial",
        "callbacks",
        "loaders",
        "recipes",
        "pretrained",
        "logging",
        "checkpoints",
        "studies",
        "architecture",
        "distributed",
        "cli",
        "errors",
        "performance",
        "api",
        "changelog",
    ):
        assert (built_html / f"{page}.html").is_file(), page
    changelog = (built_html / "changelog.html").read_text()
    assert "Keep a Changelog" in changelog and "<h2" in changelog  # rendered, not quoted


def test_the_api_page_says_truly_where_each_name_lives() -> None:
    directives = re.findall(
        r"^\s*\.\. auto\w+:: (fashionmlp[\w.]*)", (DOCS / "api.rst").read_text(), re.M
    )
    assert len(directives) > 60
    for path in directives:
        module, _, name = path.rpartition(".")
        if module == "fashionmlp" and importlib.util.find_spec(path) is not None:
            continue  # a submodule's own description
        if module == "fashionmlp":  # shown as importable from the top level: a public name
            assert name in fashionmlp.__all__, path
        else:
            assert hasattr(importlib.import_module(module), name), path
