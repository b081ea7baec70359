"""Shared fixtures: a copy of the example setup in a temporary folder, and the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `newsletter ARGS` as a user would (a real process, this checkout's code)."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def example_dir(tmp_path: Path) -> Path:
    """A temporary folder holding config.example.toml as config.toml and the bundled examples."""
    shutil.copy(REPO / "config.example.toml", tmp_path / "config.toml")
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    return tmp_path
