"""Sphinx configuration: API reference from the docstrings, built offline.

The build never touches the network: intersphinx is used only for inventories found on
disk (Debian's python3-doc has Python's), and references to torch and torchvision stay
plain text otherwise.
"""

from __future__ import annotations

from pathlib import Path

import fashionmlp

project = "fashionmlp"
author = "The fashionmlp developers"
copyright = "2026, The fashionmlp developers"
release = fashionmlp.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "examples"]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
myst_heading_anchors = 2

# Offline inventories only.
_LOCAL_INVENTORIES = {
    "python": ("https://docs.python.org/3", "/usr/share/doc/python3/html/objects.inv"),
}
intersphinx_mapping = {
    name: (url, path) for name, (url, path) in _LOCAL_INVENTORIES.items() if Path(path).is_file()
}
intersphinx_disabled_reftypes = ["*"]

# Every reference must resolve, except to the libraries whose inventories are not on disk.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|torchvision|os|collections|pathlib|PIL|numpy|typing)\..*"),
    (r"py:class", r"Path|PILImage|nn\.Module|nn\.Parameter|TextIO|Final|FrameType|Module"),
    # Type variables of generic functions: nothing to link to.
    (r"py:class", r"fashionmlp\.[\w.]*\.(T|_Function|_Record)"),
    (r"py:class", r"contextlib\..*|StopAt"),
]

# The docstrings' examples run as doctests (make test runs the doctest builder).
doctest_global_setup = "import torch\nfrom fashionmlp import *"

html_theme = "furo"
html_title = f"fashionmlp {release}"
