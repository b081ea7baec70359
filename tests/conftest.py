"""Shared fixtures: a copy of the example setup in a temporary folder, and the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from newsletter.config import load_config
from newsletter.models import Paper
from newsletter.store import Store

REPO = Path(__file__).resolve().parent.parent
DAY = date(2026, 11, 25)


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


@pytest.fixture
def config(example_dir: Path):
    """The example config, loaded, in a temporary folder."""
    return load_config(example_dir / "config.toml")


@pytest.fixture
def store(config):
    """The example config's SQLite store holding 30 papers dated the day before DAY."""
    with Store(config.store_url) as store:
        store.add_papers(
            Paper.create(f"Paper {n} about diffusion", arxiv_id=f"2411.{n:05d}", upvotes=n, published=DAY - timedelta(days=1))
            for n in range(1, 31)
        )
        yield store
