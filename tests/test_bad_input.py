"""One bad input never stops the rest (issue 16): hostile and careless subscribers, papers, files and stores.

Everything runs through the real CLI on real files: each problem is one line, no
traceback, data shows literally (never as Rich markup), and everyone else is served.
"""

from __future__ import annotations

import email
import hashlib
import json
import random
import shutil
import sqlite3
import time
from email import policy
from pathlib import Path

import pytest

from newsletter.models import Paper
from newsletter.store import EditionRecord, Outcome, State, Store
from tests.conftest import REPO, run_cli

MARKUP = "[/bold] [red]red[/red] [/x]"
CONFIG = """\
[newsletter]
name = "Papers digest"
from = "Papers digest <digest@example.org>"
base_url = "http://127.0.0.1:8025"

[store]
path = "newsletter.db"

[subscribers]
dir = "subscribers"

[delivery]
backend = "file"

[delivery.file]
dir = "outbox"
"""
DAY = "2026-11-25"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A config with a file backend, an empty subscriber folder and an empty store folder."""
    (tmp_path / "config.toml").write_text(CONFIG)
    (tmp_path / "subscribers").mkdir()
    return tmp_path


def no_traceback(result) -> None:
    assert "Traceback" not in result.stdout + result.stderr and "Error:" not in result.stderr, result.stderr


def outbox(folder: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(folder.glob("*.eml"))]


def test_bad_template_and_markup_among_300_everyone_else_is_sent(site: Path):
    for n in range(300):
        (site / "subscribers" / f"s{n:03d}.toml").write_text(f'email = "s{n:03d}@example.org"\nname = "Reader {n}"\n')
    (site / "subscribers" / "typo.toml").write_text('email = "typo@example.org"\ntemplate = "digets"\n')
    (site / "subscribers" / "zone.toml").write_text(f'email = "zone@example.org"\ntimezone = "{MARKUP}"\n')
    papers = site / "papers.jsonl"
    papers.write_text(json.dumps({"id": "2411.00001", "title": f"Bold {MARKUP} title", "abstract": f"An abstract {MARKUP}.",
                                  "authors": [f"Ann {MARKUP} Author"], "published": "2026-11-24", "upvotes": 50}) + "\n"
                      + '{"title": "' + MARKUP + '", "upvotes": "[/bold]"}\n')

    ingest = run_cli("ingest", str(papers), cwd=site)
    assert ingest.returncode == 0, ingest.stderr
    no_traceback(ingest)
    assert "papers.jsonl:2: upvotes: expected a count or null, got '[/bold]'" in ingest.stderr  # the warning, literally

    check = run_cli("subscribers", "check", cwd=site)
    assert check.returncode == 1
    no_traceback(check)
    assert check.stdout.splitlines() == [
        "subscribers/typo.toml: template: no template 'digets' (have: digest)",
        f"subscribers/zone.toml: timezone: unknown time zone '{MARKUP}'",
        "300 subscribers ok, 2 problems",
    ]

    listed = run_cli("papers", cwd=site)
    assert listed.returncode == 0, listed.stderr
    assert f"Bold {MARKUP} title" in listed.stdout
    picked = run_cli("select", "--subscriber", "s000@example.org", "--date", DAY, cwd=site)
    assert picked.returncode == 0, picked.stderr
    assert f"Bold {MARKUP} title" in picked.stdout
    people = run_cli("subscribers", "list", cwd=site)
    assert people.returncode == 0 and "300 subscribers" in people.stdout
    no_traceback(people)

    sent = run_cli("send", "--date", DAY, cwd=site)
    no_traceback(sent)
    assert sent.returncode == 0, sent.stderr
    assert "Wrote 300 emails" in sent.stdout
    problems = [line for line in sent.stderr.splitlines() if line.startswith("warning:")]
    assert problems == [
        "warning: subscribers/typo.toml: template: no template 'digets' (have: digest)",
        f"warning: subscribers/zone.toml: timezone: unknown time zone '{MARKUP}'",
    ]
    messages = outbox(site / "outbox")
    assert len(messages) == 300
    assert {m["To"].addresses[0].addr_spec for m in messages} == {f"s{n:03d}@example.org" for n in range(300)}
    text = messages[0].get_body(("plain",)).get_content()
    html = messages[0].get_body(("html",)).get_content()
    for part in (text, html):
        assert f"Bold {MARKUP} title" in part and f"An abstract {MARKUP}." in part and f"Ann {MARKUP} Author" in part


def test_a_million_lines_of_garbage_cost_what_parsing_costs(site: Path):
    lines = 1_000_000
    garbage = site / "garbage.jsonl"
    garbage.write_text("".join(f"{{not json {n}\n" for n in range(lines)))
    start = time.perf_counter()
    result = run_cli("ingest", "garbage.jsonl", cwd=site)
    seconds = time.perf_counter() - start
    no_traceback(result)
    assert result.returncode == 1  # the file yielded nothing
    warnings = result.stderr.splitlines()
    assert len(warnings) == 21
    assert warnings[0] == "warning: garbage.jsonl:1: invalid JSON: Expecting property name enclosed in double quotes (column 2)"
    assert warnings[-1] == "warning: … and 999,980 more like these in garbage.jsonl"
    assert "│ garbage.jsonl │ jsonl  │ 0      │ 0   │ 0       │ 0       │ 1,000,000 │" in result.stdout
    assert "1,000,000 warnings in 1 of 1 files (at most 20 shown per file)" in result.stdout
    print(f"\n1,000,000 garbage lines: ingest took {seconds:.1f} s (benchmarks/bench_garbage.py measures it)")


def test_a_binary_file_without_nul_bytes_is_not_papers(site: Path):
    noise = random.Random(16).randbytes(200_000).replace(b"\x00", b"\x01")
    (site / "noise.txt").write_bytes(noise)
    result = run_cli("ingest", "noise.txt", cwd=site)
    no_traceback(result)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["warning: noise.txt: not a papers file (binary?); nothing stored from it"]
    assert run_cli("papers", "--json", cwd=site).stdout == ""


def test_hello_world_is_not_a_paper(site: Path):
    (site / "junk.txt").write_text("hello world\n")
    result = run_cli("ingest", "junk.txt", cwd=site)
    no_traceback(result)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["warning: junk.txt:1: no abstract after the title 'hello world'; skipped"]
    assert run_cli("papers", "--json", cwd=site).stdout == ""


def test_the_real_samples_still_ingest_fully(site: Path):
    libraries = REPO / "tests" / "fixtures" / "relevance" / "libraries"  # subscriber libraries, not paper inputs
    files = {**{p: None for p in sorted((REPO / "tests" / "fixtures").rglob("*.*")) if libraries not in p.parents
                 and "bounces" not in p.parts},  # bounce DSNs are not paper inputs either,
             **{p: None for p in sorted((REPO / "examples" / "papers").glob("*.txt"))}}
    shared = Path("/work/shared/data")
    if shared.is_dir():
        files.update({p: None for p in sorted(shared.rglob("*")) if p.is_file() and p.name != "README.md"})
    result = run_cli("ingest", *map(str, files), cwd=site)
    assert "warning" not in result.stderr, result.stderr
    rows = {line.split("│")[1].strip(): line.split("│")[3].strip() for line in result.stdout.splitlines() if line.startswith("│")}
    expected = {"000_14173d72b6ea1fef.txt": "56", "001_ddbafe0247bcf0d6.txt": "120", "003_a438dea69ce54d15.txt": "131",
                "004_ed59a9bbcd138c3e.txt": "60", "hf-page-000.txt": "56", "hf-page-004.txt": "60",
                "api_query_testing.xml": "10", "rss_listing.xml": "7", "daily_papers.json": "4"}
    for shown, parsed in rows.items():
        name = Path(shown).name
        if name in expected:
            assert parsed == expected[name], (shown, parsed)


def test_a_megabyte_title_makes_a_small_email(site: Path):
    huge = "Huge " + "x" * 1_000_000
    (site / "subscribers" / "mallory.toml").write_text(
        'email = "mallory@example.org"\nname = "Mal\\u0000lory \\u202eevil\\u202c \\u001b[31mred"\n')
    papers = site / "papers.jsonl"
    papers.write_text(json.dumps({
        "id": "2411.00002", "title": huge, "abstract": "word" * 250_000, "authors": ["A" * 1_000_000] * 5,
        "organization": "O" * 1_000_000, "published": "2026-11-24", "upvotes": 3,
    }) + "\n")
    assert run_cli("ingest", str(papers), cwd=site).returncode == 0
    result = run_cli("send", "--date", DAY, cwd=site)
    assert result.returncode == 0, result.stderr
    [path] = (site / "outbox").glob("*.eml")
    size = path.stat().st_size
    print(f"\nan edition with a 1 MB title, abstract, author names and organisation: {size / 1024:.1f} KB")
    assert size < 60_000
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    to, subject = str(message["To"]), str(message["Subject"])
    for bad in ("\x00", "\u202e", "\u202c", "\x1b"):
        assert bad not in to and bad not in subject
        for part in ("plain", "html"):
            assert bad not in message.get_body((part,)).get_content()
    assert message["To"].addresses[0].display_name == "Mal lory evil  [31mred"
    html = message.get_body(("html",)).get_content()
    assert "Huge xxx" in html and "x" * 400 not in html and "Hi Mallory," in html  # the greeting uses the first name
    with Store(f"sqlite:///{site / 'newsletter.db'}") as store:  # the store keeps the whole value
        assert store.get_papers(["2411.00002"])["2411.00002"].title == huge


# -- the store ---------------------------------------------------------------------------


def filled_store(site: Path) -> Path:
    path = site / "newsletter.db"
    with Store(f"sqlite:///{path}") as store:
        store.add_papers(Paper.create(f"Paper {n}", arxiv_id=f"2411.{n:05d}", abstract="About things. " * 40,
                                      upvotes=n, published=None) for n in range(1, 400))
    return path


@pytest.mark.parametrize("damage", ["header", "pages"])
def test_a_damaged_store_is_one_line_saying_what_to_do(site: Path, damage: str):
    path = filled_store(site)
    data = bytearray(path.read_bytes())
    if damage == "header":
        data[:16] = b"not a store file"
    else:
        page = 4096
        middle = len(data) // page // 2
        data[middle * page:(middle + 4) * page] = random.Random(1).randbytes(4 * page)
    path.write_bytes(bytes(data))
    for command in (["papers"], ["status"], ["ingest", "x.jsonl"], ["send", "--date", DAY]):
        (site / "x.jsonl").write_text('{"title": "T", "abstract": "A"}\n')
        result = run_cli(*command, cwd=site)
        no_traceback(result)
        lines = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
        if damage == "pages" and result.returncode == 0:
            continue  # this command did not read the damaged pages
        assert result.returncode == 2, (command, result.stderr)
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"{path}: the store ") and "restore it from a backup" in lines[0]
        assert f"sqlite3 {path} .recover" in lines[0]


def test_an_empty_store_file_is_refused_not_initialised(site: Path):
    path = site / "newsletter.db"
    path.touch()
    for command in (["send", "--date", DAY], ["status"], ["ingest", "x.jsonl"]):
        (site / "x.jsonl").write_text('{"title": "T", "abstract": "A"}\n')
        result = run_cli(*command, cwd=site)
        no_traceback(result)
        assert result.returncode == 2
        assert result.stderr.splitlines()[-1] == (
            f"{path}: the store file is empty (0 bytes), not a store: if it held your ledger, restore it from a backup; "
            "to start a new store, delete the empty file first")
        assert path.stat().st_size == 0


READ_ONLY_COMMANDS = [["status"], ["status", "--json"], ["papers"], ["papers", "--json"], ["subscribers", "list"],
                      ["select", "--subscriber", "ada@example.org", "--date", DAY]]


def fingerprint(path: Path) -> tuple:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def test_a_store_opened_read_only_cannot_write(site: Path):
    path = filled_store(site)
    with Store(f"sqlite:///{path}", read_only=True) as store:
        assert store.count_papers() == 399
        with pytest.raises(Exception, match="readonly"):
            store.add_papers([Paper.create("New", abstract="x")])
    with sqlite3.connect(path) as check:
        assert check.execute("select count(*) from papers").fetchone() == (399,)


def test_read_only_commands_write_nothing(site: Path):
    path = filled_store(site)
    (site / "subscribers" / "ada.toml").write_text('email = "ada@example.org"\n')
    before = fingerprint(path)
    for command in READ_ONLY_COMMANDS:
        result = run_cli(*command, cwd=site)
        assert result.returncode == 0, (command, result.stderr)
        no_traceback(result)
    assert fingerprint(path) == before


def without_root_powers() -> list[str]:
    """A prefix that runs a command with file permissions enforced, even as root (no CAP_DAC_OVERRIDE)."""
    import os

    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file permissions would not be enforced")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def test_read_only_file_and_read_only_folder(site: Path):
    import subprocess
    import sys

    from tests.conftest import REPO as repo

    folder = site / "readonly"
    folder.mkdir()
    path = folder / "newsletter.db"
    shutil.move(filled_store(site), path)
    (site / "subscribers" / "ada.toml").write_text('email = "ada@example.org"\n')
    path.chmod(0o444)
    folder.chmod(0o555)
    prefix = without_root_powers()
    env = {"PYTHONPATH": str(repo), "COLUMNS": "200", "PATH": "/usr/bin:/bin"}
    before = fingerprint(path)
    try:
        for command in READ_ONLY_COMMANDS:
            result = subprocess.run([*prefix, sys.executable, "-m", "newsletter", "--db", str(path), *command],
                                    cwd=site, env=env, capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, (command, result.stderr)
            no_traceback(result)
        writes = subprocess.run([*prefix, sys.executable, "-m", "newsletter", "--db", str(path), "send", "--date", DAY],
                                cwd=site, env=env, capture_output=True, text=True, timeout=120)
        no_traceback(writes)
        assert writes.returncode == 2 and "the store is read-only" in writes.stderr.splitlines()[-1]
        assert sorted(p.name for p in folder.iterdir()) == ["newsletter.db"]  # no -wal or -shm made either
        assert fingerprint(path) == before
    finally:
        folder.chmod(0o755)


def test_a_server_reply_with_markup_and_line_breaks_is_one_plain_line_in_status(site: Path):
    from datetime import date

    path = filled_store(site)
    day = date.fromisoformat(DAY)
    with Store(f"sqlite:///{path}") as store:
        store.record_pending([EditionRecord("ada@example.org", day, "<m1@example.org>", [], "Subject")])
        store.record_outcomes(day, [Outcome("ada@example.org", State.FAILED,
                                            "550-5.1.1 [/bold] no such [red]user\r\n550 5.1.1 \x1b[2Jgone")])
    result = run_cli("status", cwd=site)
    assert result.returncode == 0, result.stderr
    no_traceback(result)
    assert "failed: ada@example.org 2026-11-25: 550-5.1.1 [/bold] no such [red]user  550 5.1.1 [2Jgone" in result.stdout.splitlines()


def test_subscribers_check_compiles_each_template(site: Path):
    templates = site / "templates"
    templates.mkdir()
    (templates / "broken.mjml").write_text("<mjml><mj-body><mj-section><mj-column><mj-text>{% if %}</mj-text>"
                                           "</mj-column></mj-section></mj-body></mjml>")
    (site / "config.toml").write_text(CONFIG + '\n[render]\ntemplates_dir = "templates"\n')
    (site / "subscribers" / "a.toml").write_text('email = "a@example.org"\ntemplate = "broken"\n')
    (site / "subscribers" / "b.toml").write_text('email = "b@example.org"\n')
    result = run_cli("subscribers", "check", cwd=site)
    no_traceback(result)
    assert result.returncode == 1
    [problem, summary] = result.stdout.splitlines()
    assert problem.startswith(f"subscribers/a.toml: template: {templates / 'broken.mjml'}:1: ")
    assert summary == "1 subscribers ok, 1 problems"
