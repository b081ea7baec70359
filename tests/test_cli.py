"""The store and selection commands through the real CLI: ingest, papers, select, render."""

from __future__ import annotations

import email
import json
import os
import socket
import subprocess
import sys
import time
from email import policy
from pathlib import Path

import httpx

from tests.conftest import REPO, run_cli

FIXTURES = Path(__file__).parent / "fixtures"


def test_ingest_reports_bad_files_and_keeps_the_good(example_dir: Path):
    empty = example_dir / "empty.txt"
    empty.write_bytes(b"")
    broken = example_dir / "mine.jsonl"
    broken.write_text('{"title": "A good paper", "upvotes": 3}\n{not json\n{"title": "Another good one"}\n')
    result = run_cli("ingest", str(broken), str(empty), cwd=example_dir)
    assert result.returncode == 1  # one file yielded nothing
    assert "mine.jsonl:2: " in result.stderr and "empty.txt" in result.stderr
    assert "Traceback" not in result.stderr
    papers = run_cli("papers", "--json", cwd=example_dir)
    titles = [json.loads(line)["title"] for line in papers.stdout.splitlines()]
    assert sorted(titles) == ["A good paper", "Another good one"]

    good = run_cli("ingest", str(FIXTURES / "hf-pages" / "000_14173d72b6ea1fef.txt"), cwd=example_dir)
    assert good.returncode == 0, good.stderr
    assert "56" in good.stdout


def test_papers_json_fields_since_and_limit(example_dir: Path):
    assert run_cli("ingest", cwd=example_dir).returncode == 0
    lines = run_cli("papers", "--json", "--since", "2024-12-01", "--limit", "5", cwd=example_dir).stdout.splitlines()
    assert 0 < len(lines) <= 5
    for line in lines:
        paper = json.loads(line)
        assert {"id", "title", "abstract", "authors", "author_count", "organization", "published", "upvotes",
                "url", "sources"} <= set(paper)
        assert paper["published"] is None or paper["published"] >= "2024-12-01"  # undated: first seen today


def test_select_shows_picks_with_reasons_and_touches_no_ledger(example_dir: Path):
    assert run_cli("ingest", cwd=example_dir).returncode == 0
    result = run_cli("select", "--subscriber", "ada@example.org", "--date", "2026-11-25", "--json", cwd=example_dir)
    assert result.returncode == 0, result.stderr
    picks = json.loads(result.stdout)["picks"]
    assert 0 < len(picks) <= 8
    for pick in picks:
        assert pick["reasons"] and pick["reasons"][0].startswith("matched ")
        assert "survey" not in (pick["paper"]["title"] + pick["paper"]["abstract"]).lower()
    status = json.loads(run_cli("status", "--json", cwd=example_dir).stdout)
    assert sum(status["counts"].values()) == 0
    unknown = run_cli("select", "--subscriber", "nobody@example.org", cwd=example_dir)
    assert unknown.returncode == 2 and "nobody@example.org: no such subscriber" in unknown.stderr


def test_render_writes_html_text_and_eml(example_dir: Path):
    assert run_cli("ingest", cwd=example_dir).returncode == 0
    for suffix in ("html", "txt", "eml"):
        out = example_dir / f"grace.{suffix}"
        result = run_cli("render", "--subscriber", "grace@example.org", "--date", "2026-11-25", "--out", str(out),
                         cwd=example_dir)
        assert result.returncode == 0, result.stderr
    assert "<html" in (example_dir / "grace.html").read_text()
    assert "Grace" in (example_dir / "grace.txt").read_text()
    message = email.message_from_bytes((example_dir / "grace.eml").read_bytes(), policy=policy.default)
    assert message["To"].addresses[0].addr_spec == "grace@example.org"
    bad = run_cli("render", "--subscriber", "grace@example.org", "--out", "x.pdf", cwd=example_dir)
    assert bad.returncode == 2 and "use a .html, .txt or .eml file name" in bad.stderr


def test_preview_serves_what_send_would_deliver(example_dir: Path):
    assert run_cli("ingest", cwd=example_dir).returncode == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "newsletter", "preview", "--port", str(port)], cwd=example_dir,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                index = httpx.get(base + "/", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert index.status_code == 200 and "ada@example.org" in index.text
        picks = json.loads(run_cli("select", "--subscriber", "ada@example.org", "--date", "2026-11-25", "--json",
                                   cwd=example_dir).stdout)["picks"]
        text = httpx.get(base + "/s/ada@example.org/text?date=2026-11-25", timeout=10).text
        for pick in picks:
            assert pick["paper"]["title"] in " ".join(text.split())
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert "Traceback" not in stderr
