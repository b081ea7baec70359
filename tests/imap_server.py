"""A real, throwaway IMAP server for tests: Debian's Dovecot (`dovecot-imapd`), like tests/pg_server.py.

`imap_server` runs `dovecot -F` with its own config in a temporary folder: IMAP on a
free loopback port, plaintext LOGIN allowed (loopback only, no TLS), one user from a
passwd-file, Maildir storage in the folder. As root, mail is owned by the `dovecot`
user (Dovecot refuses to handle mail as root). Tests skip when Dovecot is absent.

Import the fixture into a test module: `from tests.imap_server import imap_server`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

DOVECOT = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = {login_user}
default_internal_user = {internal_user}
first_valid_uid = {uid}
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


@dataclass(frozen=True)
class ImapServer:
    host: str
    port: int
    username: str
    password: str
    log: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def dovecot_server() -> Iterator[ImapServer]:
    """Run a private Dovecot until the block ends; LookupError when it is not installed."""
    if DOVECOT is None:
        raise LookupError("Dovecot not installed: apt-get install dovecot-imapd")
    root = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        owner = pwd.getpwnam("dovecot")
        login_user, internal_user = "dovenull", "dovecot"
    else:
        owner = pwd.getpwuid(os.geteuid())
        login_user = internal_user = owner.pw_name
    port = _free_port()
    for sub in ("run", "state", "mail", "home"):
        (root / sub).mkdir()
    if os.geteuid() == 0:
        for sub in ("mail", "home", "state"):
            os.chown(root / sub, owner.pw_uid, owner.pw_gid)
    username, password = "bounces", "test-password"
    (root / "passwd").write_text(f"{username}:{{PLAIN}}{password}\n")
    (root / "dovecot.conf").write_text(CONFIG.format(
        root=root, port=port, uid=owner.pw_uid, gid=owner.pw_gid, login_user=login_user, internal_user=internal_user))
    process = subprocess.Popen([DOVECOT, "-F", "-c", str(root / "dovecot.conf")], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
                output = process.stdout.read().decode() if process.poll() is not None else ""
                raise RuntimeError(f"dovecot did not start:\n{output}\n{log}")
            time.sleep(0.1)
        yield ImapServer("127.0.0.1", port, username, password, root / "dovecot.log")
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def imap_server() -> Iterator[ImapServer]:
    try:
        with dovecot_server() as server:
            yield server
    except LookupError as error:
        pytest.skip(str(error))
