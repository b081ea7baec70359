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
