"""Real servers for the tests: Dovecot when installed (else pymap in-process), aiosmtpd, PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from imapclient import IMAPClient

from mailer.demo.embedded import EmbeddedImap, free_port

DOVECOT_CONF = """\
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = supportd-test-{tag}
log_path = {dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login{mechanisms}
auth_failure_delay = 0
mail_location = maildir:{dir}/mail/%u
{oauth_passdb}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {dir}/users
  override_fields = uid=65534 gid=65534 home={dir}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
}}
"""

DOVECOT_SSL = """ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}"""

DOVECOT_OAUTH_PASSDB = """passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {conf}
}}
"""

DOVECOT_OAUTH_CONF = """introspection_mode = post
introspection_url = {url}
username_attribute = username
active_attribute = active
active_value = true
"""

USER_POOL = 500


def dovecot_available() -> bool:
    return shutil.which("dovecot") is not None and os.geteuid() == 0 and not os.environ.get("SUPPORTD_TEST_PYMAP")


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                if sock.recv(64).startswith(b"* OK"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no IMAP greeting on port {port}")


class Dovecot:
    """One Dovecot instance for the test session; each test gets a user (and so a mailbox) of its own."""

    kind = "dovecot"

    def __init__(self, tls: tuple[Path, Path] | None = None, introspection_url: str | None = None,
                 users: int = USER_POOL, extra_conf: str = "") -> None:
        """`tls`: certificate and key files (then IMAPS listens on `imaps_port` and STARTTLS is offered);
        `introspection_url`: also accept XOAUTH2/OAUTHBEARER tokens that this RFC 7662 endpoint calls active."""
        self.dir = Path(tempfile.mkdtemp(prefix="supportd-dovecot-"))
        os.chmod(self.dir, 0o755)  # the dovecot user must traverse it to read the users file
        self.port = free_port()
        self.imaps_port = free_port() if tls else 0
        for sub in ("run", "state", "mail", "home"):
            (self.dir / sub).mkdir()
        # Users are made up front: Dovecot re-reads the file by mtime, which has one-second granularity.
        self.users = [f"u{i:04d}{uuid.uuid4().hex[:6]}" for i in range(users)]
        (self.dir / "users").write_text("".join(f"{u}:{{PLAIN}}secret::::::\n" for u in self.users))
        os.chmod(self.dir / "users", 0o644)
        for sub in ("mail", "home"):
            os.chown(self.dir / sub, 65534, 65534)
        self.conf = self.dir / "dovecot.conf"
        ssl = DOVECOT_SSL.format(cert=tls[0], key=tls[1]) if tls else "ssl = no"
        oauth_passdb = mechanisms = ""
        if introspection_url:
            (self.dir / "oauth2.conf.ext").write_text(DOVECOT_OAUTH_CONF.format(url=introspection_url))
            oauth_passdb = DOVECOT_OAUTH_PASSDB.format(conf=self.dir / "oauth2.conf.ext")
            mechanisms = " xoauth2 oauthbearer"
        self.conf.write_text(DOVECOT_CONF.format(dir=self.dir, port=self.port, tag=uuid.uuid4().hex[:8], ssl=ssl,
                                                 imaps_port=self.imaps_port, oauth_passdb=oauth_passdb,
                                                 mechanisms=mechanisms) + extra_conf)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Dovecot:
        # A process group of its own: stopping it stops its imap processes too, closing every connection.
        self.process = subprocess.Popen(["dovecot", "-F", "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True)
        wait_for_port(self.port)
        return self

    def new_mailbox(self) -> Mailbox:
        return Mailbox("127.0.0.1", self.port, self.users.pop(), "secret")

    def halt(self, how: signal.Signals = signal.SIGTERM) -> None:
        """Stop the server but keep its mail: `start()` brings the same mailboxes back (outage tests).

        SIGTERM is an orderly stop (clients get BYE); SIGKILL a crash (connections just close)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, how)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            if self.process.stderr is not None:
                self.process.stderr.close()
            self.process = None

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)


class Pymap:
    """The fallback: pymap in this process, a fresh server (and so an empty mailbox) per test."""

    kind = "pymap"

    def start(self) -> Pymap:
        return self

    def new_mailbox(self) -> Mailbox:
        server = EmbeddedImap().start()
        return Mailbox(server.host, server.port, server.user, server.password, server)

    def stop(self) -> None:
        pass


@dataclass
class Mailbox:
    host: str
    port: int
    user: str
    password: str
    server: EmbeddedImap | None = None

    def url(self, folder: str = "INBOX") -> str:
        return f"imap://{self.user}:{self.password}@{self.host}:{self.port}/{folder}"

    def client(self) -> IMAPClient:
        client = IMAPClient(self.host, self.port, ssl=False, timeout=30)
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.login(self.user, self.password)
        return client

    def append(self, *raws: bytes, folder: str = "INBOX") -> None:
        with self.client() as client:
            for raw in raws:
                client.append(folder, raw)

    def flags(self, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            uids = client.search(["ALL"])
            return {uid: tuple(f) for uid, f in client.get_flags(uids).items()} if uids else {}

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
