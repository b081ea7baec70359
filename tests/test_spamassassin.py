"""SpamAssassin's score for a default digest (Debian's spamassassin, local tests only: no network rules)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.skipif(shutil.which("spamassassin") is None, reason="spamassassin not installed (apt-get install spamassassin)")


def score(message: bytes) -> tuple[float, str]:
    report = subprocess.run(["spamassassin", "-t", "-L"], input=message, capture_output=True, timeout=120).stdout.decode()
    found = re.search(r"Content analysis details:\s+\((-?[\d.]+) points", report)
    assert found, report[-2000:]
    return float(found[1]), report[found.start():]


def ingested(example_dir):
    result = run_cli("send", "--dry-run", cwd=example_dir)  # ingests the sample papers
    assert result.returncode == 0, result.stderr
    return example_dir


def test_a_default_digest_scores_at_most_half_a_point(example_dir):
    ingested(example_dir)
    made = run_cli("render", "-s", "grace@example.org", "-o", "grace.eml", cwd=example_dir)
    assert made.returncode == 0, made.stderr
    points, report = score((example_dir / "grace.eml").read_bytes())
    assert points <= 0.5, report
    assert "HTML_FONT_LOW_CONTRAST" not in report and "FONT_INVIS" not in report, report


def test_the_hidden_preheader_is_not_white(example_dir):
    ingested(example_dir)
    made = run_cli("render", "-s", "grace@example.org", "-o", "grace.html", cwd=example_dir)
    assert made.returncode == 0, made.stderr
    html = (example_dir / "grace.html").read_text()
    hidden = re.search(r'<div style="(display:none;[^"]*)"', html)
    assert hidden and "color:#ffffff" not in hidden[1] and "mso-hide:all" in hidden[1]
