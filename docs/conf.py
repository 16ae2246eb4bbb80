"""Sphinx configuration: API reference from the docstrings, built offline."""

from __future__ import annotations

import fashionmlp

project = "fashionmlp"
author = "The fashionmlp developers"
copyright = "2026, The fashionmlp developers"
release = fashionmlp.__version__
version = release

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_theme_options = {"description": "FashionMNIST MLP training, typed and fast"}
