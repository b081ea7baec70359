"""Going live safely, through the real CLI in a temporary folder: secrets, the private preview, one-click unsubscribe."""

from __future__ import annotations

import email
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from email import policy
from pathlib import Path

import httpx
import pytest

from newsletter.config import INSECURE_DEV_KEY
from newsletter.unsubscribe import make_token, verify_token

from tests.conftest import REPO, run_cli

SECRET = "test-secret-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running(*args: str, cwd: Path, env: dict | None = None):
    """`newsletter ARGS --port P` as a real process; yields (base URL, the process). Its stderr is checked for tracebacks."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", *args, "--port", str(port)], cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                httpx.get(base + "/healthz", timeout=5)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read()
                time.sleep(0.1)
        yield base, process
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
        process.stderr_text = stderr
    assert "Traceback" not in stderr


def no_secret_env() -> dict:
    return {"NEWSLETTER_SECRET": "", "NEWSLETTER_PREVIEW_PASSWORD": ""}


def set_backend(directory: Path, backend: str, extra: str = "") -> None:
    config = directory / "config.toml"
    text = config.read_text().replace('backend = "file"', f'backend = "{backend}"', 1)
    config.write_text(text + extra)


# -- the secret --------------------------------------------------------------------------------------------------


def test_serve_without_the_secret_refuses_naming_it(example_dir: Path):
    result = run_cli("serve", "--port", str(free_port()), cwd=example_dir, env=no_secret_env())
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "NEWSLETTER_SECRET is not set" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    """An installed plugin backend (a dist-info folder) that says nothing about real_mail: it is taken to send real mail."""
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / "pigeon_backend.py").write_text(textwrap.dedent("""
        from newsletter.delivery.base import Backend, SendResult

        class PigeonBackend(Backend):
            name = "pigeon"

            def send_messages(self, messages, on_result=None):
                return [SendResult(m.message_id, True, "250 flown") for m in messages]
    """))
    dist = folder / "pigeon_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pigeon-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[newsletter.backends]\npigeon = pigeon_backend:PigeonBackend\n")
    return folder


def test_a_plugin_backend_without_the_secret_is_refused(example_dir: Path, plugin_path: Path):
    set_backend(example_dir, "pigeon")
    env = {**no_secret_env(), "PYTHONPATH": f"{REPO}{os.pathsep}{plugin_path}"}
    for args in (["send"], ["send", "--dry-run"], ["run"]):
        result = run_cli(*args, cwd=example_dir, env=env)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "NEWSLETTER_SECRET is not set" in result.stderr and "'pigeon'" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (example_dir / "outbox").exists()
    sent = run_cli("send", cwd=example_dir, env={**env, "NEWSLETTER_SECRET": SECRET})
    assert sent.returncode == 0, sent.stderr
    assert "Sent 3 emails to pigeon" in sent.stdout
    # real mail with the sample's http://127.0.0.1 base_url: one warning naming base_url
    assert sent.stderr.count("newsletter.base_url") == 1 and "not a public https URL" in sent.stderr


def test_local_backends_need_no_secret_and_get_no_base_url_warning(example_dir: Path):
    result = run_cli("send", cwd=example_dir, env=no_secret_env())
    assert result.returncode == 0 and "Wrote 3 emails to outbox" in result.stdout
    assert "base_url" not in result.stderr


@pytest.mark.parametrize("base_url, warned", [
    ("http://news.example.org", True), ("https://localhost:8443", True), ("https://127.0.0.1", True),
    ("https://news.example.org", False),
])
def test_real_mail_with_a_local_base_url_is_warned_about(example_dir: Path, base_url: str, warned: bool):
    config = example_dir / "config.toml"
    config.write_text(config.read_text().replace('"http://127.0.0.1:8025"', f'"{base_url}"'))
    set_backend(example_dir, "smtp")
    result = run_cli("send", "--dry-run", cwd=example_dir, env={"NEWSLETTER_SECRET": SECRET})
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("newsletter.base_url") == (1 if warned else 0)


def test_a_password_in_password_env_is_refused_without_echoing_it(example_dir: Path):
    config = example_dir / "config.toml"
    config.write_text(config.read_text().replace('# username = "digest"\n# password_env = "SMTP_PASSWORD"',
                                                 'username = "digest"\npassword_env = "Tr0ub4dor3"'))
    result = run_cli("subscribers", "check", cwd=example_dir)
    assert result.returncode == 2
    assert "delivery.smtp.password_env" in result.stderr and "Tr0ub4dor3" not in result.stderr + result.stdout


# -- the private preview -----------------------------------------------------------------------------------------


def test_the_preview_answers_only_loopback_names_and_its_eml_unsubscribes_nobody(example_dir: Path):
    assert run_cli("ingest", cwd=example_dir).returncode == 0
    with running("preview", cwd=example_dir, env={"NEWSLETTER_SECRET": SECRET}) as (base, _):
        assert httpx.get(base + "/", timeout=10).status_code == 200
        rebound = httpx.get(base + "/s/ada@example.org/eml?date=2026-11-25", headers={"host": "evil.example:8025"}, timeout=10)
        assert rebound.status_code == 400 and b"ada@example.org" not in rebound.content
        eml = httpx.get(base + "/s/ada@example.org/eml?date=2026-11-25", timeout=10)
        assert eml.status_code == 200
    message = email.message_from_bytes(eml.content, policy=policy.default)
    token = re.search(r"token=([A-Za-z0-9_.-]+)", message["List-Unsubscribe"])[1]
    # neither key `serve` could be using accepts it
    assert verify_token(token, SECRET.encode()) is None and verify_token(token, INSECURE_DEV_KEY) is None


def test_the_preview_elsewhere_than_loopback_needs_a_password(example_dir: Path):
    refused = run_cli("preview", "--host", "0.0.0.0", "--port", str(free_port()), cwd=example_dir, env=no_secret_env())
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "NEWSLETTER_PREVIEW_PASSWORD" in refused.stderr
    env = {"NEWSLETTER_PREVIEW_PASSWORD": "correct horse"}
    with running("preview", cwd=example_dir, env=env) as (base, process):
        assert httpx.get(base + "/", timeout=10).status_code == 401
        assert httpx.get(base + "/", auth=("me", "wrong"), timeout=10).status_code == 401
        assert httpx.get(base + "/", auth=("me", "correct horse"), timeout=10).status_code == 200
    assert "password required" in process.stderr_text and "correct horse" not in process.stderr_text


# -- the public endpoint -----------------------------------------------------------------------------------------


def test_serve_health_and_one_click(example_dir: Path):
    env = {"NEWSLETTER_SECRET": SECRET}
    token = make_token("ada@example.org", SECRET.encode())
    with running("serve", cwd=example_dir, env=env) as (base, _):
        assert httpx.get(base + "/healthz", timeout=10).text == "ok"
        assert httpx.get(base + "/", timeout=10).status_code == 404
        forged = make_token("ada@example.org", INSECURE_DEV_KEY)
        assert httpx.post(f"{base}/unsubscribe?token={forged}", data={"List-Unsubscribe": "One-Click"}, timeout=10).status_code == 400
        assert httpx.post(f"{base}/unsubscribe?token={token}", timeout=10).status_code == 400
        listed = run_cli("subscribers", "list", cwd=example_dir, env=env).stdout
        assert "unsubscribed" not in listed
        done = httpx.post(f"{base}/unsubscribe?token={token}", data={"List-Unsubscribe": "One-Click"}, timeout=10)
        assert done.status_code == 200
    listed = run_cli("subscribers", "list", cwd=example_dir, env=env).stdout
    assert re.search(r"ada@example.org.*unsubscribed", listed)


# -- from nothing to a dry run --------------------------------------------------------------------------------------


def test_init_add_check_dry_run(tmp_path: Path):
    assert run_cli("--version", cwd=tmp_path).stdout.strip() == "newsletter 0.1.0"
    made = run_cli("init", "mysite", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    site = tmp_path / "mysite"
    config = (site / "config.toml").read_text()
    assert 'fetch = ["hf", "arxiv:cs.LG"]' in config and "\ninputs" not in config
    assert (site / "subscribers").is_dir() and not list((site / "subscribers").iterdir())
    for step in ("subscribers add", "base_url", "NEWSLETTER_SECRET", "DKIM", "starttls", "Going live"):
        assert step in made.stdout
    again = run_cli("init", "mysite", cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr and (site / "config.toml").read_text() == config

    added = run_cli("subscribers", "add", "Ada@Example.org", "--name", 'Ada "A." Lovelace', "--timezone", "Europe/London",
                    "--send-at", "07:30", "--days", "mon,tue,wed,thu,fri", "--keyword", "large language models",
                    "--keyword", "-survey", "--max-items", "5", cwd=site)
    assert added.returncode == 0, added.stderr
    written = site / "subscribers" / "ada@example.org.toml"
    assert 'mode = "keywords"' in written.read_text()
    checked = run_cli("subscribers", "check", cwd=site)
    assert checked.returncode == 0 and "1 subscribers ok, 0 problems" in checked.stdout
    listed = run_cli("subscribers", "list", cwd=site).stdout
    assert "ada@example.org" in listed and "Europe/London" in listed and "mon,tue,wed,thu,fri" in listed

    papers = run_cli("ingest", str(REPO / "examples" / "papers"), cwd=site)  # a folder: its files
    assert papers.returncode == 0 and papers.stdout.count("hf-page-0") == 2
    dry = run_cli("send", "--dry-run", "--date", "2026-12-01", cwd=site, env=no_secret_env())
    assert dry.returncode == 0, dry.stderr
    assert "Dry run" in dry.stdout and not (site / "outbox").exists()
    assert run_cli("select", "-s", "ada@example.org", "--date", "2026-12-01", cwd=site).returncode == 0


def test_subscribers_add_validates_as_loading_does(example_dir: Path):
    folder = example_dir / "examples" / "subscribers"
    before = sorted(p.name for p in folder.iterdir())
    cases = [
        (["ada@example.org"], "already subscribed (in examples/subscribers/ada.toml)"),
        (["x@example.org", "--timezone", "Mars/Base"], "x@example.org.toml: timezone: unknown time zone 'Mars/Base'"),
        (["x@example.org", "--send-at", "25:00"], "send_at: expected a time like"),
        (["x@example.org", "--mode", "keywords"], "needs at least one keyword"),
        (["x@example.org", "--keyword", "diffusion^2^3"], "more than one '^'"),
        (["x@example.org", "--max-items", "0"], "max_items"),
        (["notanemail"], "email: value is not a valid email address"),
    ]
    for args, expected in cases:
        result = run_cli("subscribers", "add", *args, cwd=example_dir)
        assert result.returncode == 2 and expected in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == before


def test_subscribers_remove_deletes_the_file(example_dir: Path):
    removed = run_cli("subscribers", "remove", "GRACE@example.org", cwd=example_dir)
    assert removed.returncode == 0 and "Deleted examples/subscribers/grace.toml" in removed.stdout
    assert not (example_dir / "examples" / "subscribers" / "grace.toml").exists()
    again = run_cli("subscribers", "remove", "grace@example.org", cwd=example_dir)
    assert again.returncode == 2 and "no such subscriber" in again.stderr


# -- common mistakes: one line, no traceback, non-zero exit ----------------------------------------------------------


def one_line_failure(result, code: int, expected: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_common_mistakes_get_one_line(example_dir: Path, tmp_path: Path):
    one_line_failure(run_cli("send", "--only", "nobody@example.org", cwd=example_dir), 2,
                     "nobody@example.org: no such subscriber in examples/subscribers")
    grace = example_dir / "examples" / "subscribers" / "grace.toml"
    grace.write_text(grace.read_text() + "active = false\n")
    one_line_failure(run_cli("send", "--only", "grace@example.org", cwd=example_dir), 2,
                     "grace@example.org: not active (active = false in examples/subscribers/grace.toml)")
    one_line_failure(run_cli("subscribers", "disable", "notanemail", cwd=example_dir), 2, "'notanemail': not an email address")
    one_line_failure(run_cli("subscribers", "enable", "not an email", cwd=example_dir), 2, "not an email address")
    keyword = example_dir / "examples" / "subscribers" / "ada.toml"
    keyword.write_text(keyword.read_text().replace('"-survey"', '"diffusion OR video"'))
    checked = run_cli("subscribers", "check", cwd=example_dir)
    assert checked.returncode == 1
    assert "ada.toml: keywords: keyword 'diffusion OR video': OR is not an operator" in checked.stdout
    assert "'diffusion', 'video'" in checked.stdout

    rendered = run_cli("render", "-s", "grace@example.org", "--date", "2026-12-01", "--out", "missing/dir/x.html", cwd=example_dir)
    assert rendered.returncode == 1 and "no papers in the store" in rendered.stderr  # nothing ingested yet: says why
    assert run_cli("ingest", cwd=example_dir).returncode == 0
    rendered = run_cli("render", "-s", "grace@example.org", "--date", "2026-12-01", "--out", "missing/dir/x.html", cwd=example_dir)
    assert rendered.returncode == 0, rendered.stderr
    assert (example_dir / "missing" / "dir" / "x.html").stat().st_size > 1000

    # no config file: ingest and papers work on --db alone
    alone = tmp_path / "alone"
    alone.mkdir()
    ingested = run_cli("--db", "papers.db", "ingest", str(REPO / "examples" / "papers"), cwd=alone)
    assert ingested.returncode == 0, ingested.stderr
    listed = run_cli("papers", "--db", "papers.db", "--json", cwd=alone)
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) > 100
    one_line_failure(run_cli("papers", cwd=alone), 2, "config.toml: file not found")

    (example_dir / "examples" / "subscribers").rename(example_dir / "elsewhere")
    for args in (["send"], ["subscribers", "list"], ["select", "-s", "ada@example.org"], ["run"]):
        one_line_failure(run_cli(*args, cwd=example_dir), 2, "examples/subscribers: subscriber folder not found")


def test_select_shows_what_was_sent_and_render_agrees(example_dir: Path):
    assert run_cli("send", "--date", "2026-12-01", cwd=example_dir).returncode == 0
    shown = run_cli("select", "-s", "ada@example.org", "--date", "2026-12-01", "--json", cwd=example_dir)
    data = __import__("json").loads(shown.stdout)
    # when it was sent: the clock's date, which is the edition's only when the test runs on that day
    assert re.fullmatch(r"already sent \d{4}-\d\d-\d\d \d\d:\d\d UTC, 8 papers", data["recorded"])
    sent = email.message_from_bytes(next((example_dir / "outbox").glob("ada*.eml")).read_bytes(), policy=policy.default)
    text = " ".join(sent.get_body(("plain",)).get_content().split())
    assert all(pick["paper"]["title"] in text for pick in data["picks"])
    table = run_cli("select", "-s", "ada@example.org", "--date", "2026-12-01", cwd=example_dir).stdout
    assert data["recorded"].rpartition(",")[0] in table and "--fresh" in table
    fresh = __import__("json").loads(run_cli("select", "-s", "ada@example.org", "--date", "2026-12-01", "--fresh", "--json",
                                             cwd=example_dir).stdout)
    assert fresh["recorded"] is None
    future = run_cli("select", "-s", "ada@example.org", "--date", "2099-01-01", cwd=example_dir)
    assert future.returncode == 0 and "2099-01-01 is in the future" in future.stderr


# -- the bundled demo, the deployment, cron ----------------------------------------------------------------------------


def test_the_sample_page_date_is_from_2025(example_dir: Path):
    """The pages show "Dec 31, 2024" with its year (so they are not from 2024) and dates like "Nov 20" without one."""
    assert run_cli("ingest", cwd=example_dir).returncode == 0
    import json

    papers = [json.loads(line) for line in run_cli("papers", "--json", cwd=example_dir).stdout.splitlines()]
    dates = sorted(p["published"] for p in papers if p["published"])
    assert dates[-1] <= "2025-12-10"
    olmo = next(p for p in papers if p["title"].startswith("2 OLMo 2 Furious") or "OLMo 2 Furious" in p["title"])
    assert olmo["published"] == "2024-12-31"
    assert any(d.startswith("2025-11") for d in dates)  # "Nov 20", no year: the page's 2025


@pytest.mark.parametrize("day", ["2026-12-01", "2031-06-15"])
def test_the_bundled_demo_sends_papers_on_any_date(example_dir: Path, day: str):
    result = run_cli("send", "--date", day, cwd=example_dir)
    assert result.returncode == 0 and "Wrote 3 emails to outbox" in result.stdout, result.stdout + result.stderr


def test_cron_hears_nothing_when_all_is_well(example_dir: Path):
    """stderr is not a terminal here (as under cron): a good run says nothing there."""
    for args in (["ingest"], ["send"], ["send"], ["status"], ["subscribers", "check"]):
        result = run_cli(*args, cwd=example_dir)
        assert result.returncode == 0 and result.stderr == "", (args, result.stderr)


def test_deployment_runs_serve_beside_run_with_health_checks():
    import shlex

    import yaml

    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    commands = {name: service.get("command", []) for name, service in services.items()}
    assert any("run" in command for command in commands.values())
    assert any("worker" in command for command in commands.values())
    web = next(name for name, command in commands.items() if "serve" in command)
    assert "/healthz" in " ".join(services[web]["healthcheck"]["test"])
    units = {path.name: path.read_text() for path in (REPO / "deploy").glob("*.service")}
    execs = [re.search(r"^ExecStart=\S+ (.*)$", text, re.M)[1] for text in units.values()]
    assert any(" run" in e for e in execs) and any(" serve " in e for e in execs)
    for argv in [*[shlex.split(e) for e in execs], *[c[1:] for c in commands.values() if c[:1] == ["newsletter"]]]:
        # each command line is one the CLI accepts
        assert run_cli(*argv, "--help", cwd=REPO).returncode == 0, argv
