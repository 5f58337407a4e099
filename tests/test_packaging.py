"""Packaging facts the code relies on: one version, the extension's build options."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

import fastidx

REPO = Path(__file__).resolve().parents[1]


def test_version_is_written_once():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert importlib.metadata.version("fastidx") == fastidx.__version__
