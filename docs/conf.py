"""Sphinx configuration: Markdown pages through MyST, the API reference from the package's docstrings."""

from __future__ import annotations

import sys
from pathlib import Path

# Document the package this checkout holds, whatever else is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fsspec_s3reader

project = "fsspec_s3reader"
author = "fsspec_s3reader contributors"
release = version = fsspec_s3reader.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]

# Headings get GitHub-style anchors, so page#section links work on GitHub and in the built site alike.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = f"fsspec_s3reader {release}"
