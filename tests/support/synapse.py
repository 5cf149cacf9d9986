"""A real Synapse homeserver for the Matrix tests: started as a separate process from
the virtualenv that `scripts/install-synapse` makes, on a free 127.0.0.1 port, with its
data (SQLite, media, signing key, log) in a temporary directory.

The configuration is written by hand (as JSON, which YAML reads) instead of with
``--generate-config``: client listener only, no TLS, no federation, no key servers,
``registration_shared_secret`` for creating users, cheap bcrypt, no presence.  Rate
limits are raised for ordinary tests; ``default_message_limits=True`` keeps Synapse's
own ``rc_message`` (0.2/s, burst 10) so one test can prove that the bridge paces
itself.  Users are created through the shared-secret admin API
(``/_synapse/admin/v1/register``), which is what ``register_new_matrix_user`` does.
Everything here is synchronous (subprocess and urllib): fixtures call it once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SERVER_NAME = "localhost"
START_TIMEOUT_S = 90.0
_RAISED = {"per_second": 10_000, "burst_count": 100_000}


def synapse_venv() -> Path:
    """Where `scripts/install-synapse` puts Synapse."""
    return Path(os.environ.get("THREADLINE_SYNAPSE_VENV") or REPO / ".synapse-venv")


def synapse_python() -> Path | None:
    """The venv's interpreter if Synapse is installed there, else None."""
    python = synapse_venv() / "bin" / "python"
    if not python.exists() or not (synapse_venv() / "bin" / "register_new_matrix_user").exists():
        return None
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Account:
    user_id: str
    localpart: str
    password: str
    access_token: str
    device_id: str


class SynapseError(RuntimeError):
    pass


def homeserver_config(
    data: Path, port: int, secret: str, *, default_limits: bool
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "server_name": SERVER_NAME,
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "pid_file": str(data / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(data / "homeserver.db")}},
        "media_store_path": str(data / "media"),
        "signing_key_path": str(data / "signing.key"),
        "log_config": str(data / "log.config"),
        "registration_shared_secret": secret,
        "macaroon_secret_key": secrets.token_hex(16),
        "form_secret": secrets.token_hex(16),
        "report_stats": False,
        "enable_metrics": False,
        "enable_registration": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "url_preview_enabled": False,
        "bcrypt_rounds": 4,
        "presence": {"enabled": False},
        "rc_login": {"address": _RAISED, "account": _RAISED, "failed_attempts": _RAISED},
        "rc_registration": _RAISED,
        "rc_joins": {"local": _RAISED, "remote": _RAISED},
        "rc_joins_per_room": _RAISED,
        "rc_invites": {"per_room": _RAISED, "per_user": _RAISED, "per_issuer": _RAISED},
        "rc_room_creation": _RAISED,
        "rc_key_requests": _RAISED,
        "rc_media_create": _RAISED,
        "rc_profile": _RAISED,
        "rc_delayed_event_mgmt": _RAISED,
    }
    if not default_limits:
        config["rc_message"] = _RAISED
    return config


def _log_config(data: Path) -> dict[str, Any]:
    return {
        "version": 1,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "plain",
                "filename": str(data / "homeserver.log"),
            }
        },
        "loggers": {"synapse.access": {"level": "INFO"}},
        "root": {"level": "INFO", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }


class Synapse:
    """One homeserver process; `start()` returns when its client API answers."""

    def __init__(self, data: Path, *, default_message_limits: bool = False) -> None:
        self.data = data
        self.default_message_limits = default_message_limits
        self.port = 0
        self.secret = secrets.token_hex(16)
        self.proc: subprocess.Popen[bytes] | None = None
        self._admin: Account | None = None
        self._users = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Synapse:
        python = synapse_python()
        if python is None:
            raise SynapseError(f"Synapse is not installed in {synapse_venv()}")
        self.data.mkdir(parents=True, exist_ok=True)
        (self.data / "media").mkdir(exist_ok=True)
        seed = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        (self.data / "signing.key").write_text(f"ed25519 a_test {seed}\n")
        (self.data / "log.config").write_text(json.dumps(_log_config(self.data)))
        self.port = free_port()
        config = homeserver_config(
            self.data, self.port, self.secret, default_limits=self.default_message_limits
        )
        (self.data / "homeserver.yaml").write_text(json.dumps(config, indent=1))
        stderr = (self.data / "stderr.log").open("wb")
        self.proc = subprocess.Popen(
            [str(python), "-m", "synapse.app.homeserver", "-c", str(self.data / "homeserver.yaml")],
            cwd=self.data,
            stdout=stderr,
            stderr=subprocess.STDOUT,
        )
        stderr.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise SynapseError(
                    f"Synapse exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.base_url}/_matrix/client/versions", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.stop()
        raise SynapseError(f"Synapse did not answer in {START_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for name in ("stderr.log", "homeserver.log"):
            path = self.data / name
            if path.exists():
                parts.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(parts)

    def responses(self, user_id: str, status: int) -> list[str]:
        """Requests by `user_id` that Synapse answered with `status` (from its access log)."""
        path = self.data / "homeserver.log"
        if not path.exists():
            return []
        needle = f"{{{user_id}}} Processed request"
        return [
            line
            for line in path.read_text(errors="replace").splitlines()
            if needle in line and f"B {status} " in line
        ]

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    # --- client-server and admin API ------------------------------------------------

    def request(
        self, method: str, path: str, body: Any = None, *, token: str | None = None
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return dict(json.loads(resp.read() or b"{}"))
        except urllib.error.HTTPError as e:
            raise SynapseError(f"{method} {path}: {e.code} {e.read()[:300]!r}") from None

    def register(self, localpart: str | None = None, *, admin: bool = False) -> Account:
        """A new user through the shared-secret admin API (logged in on one device)."""
        self._users += 1
        localpart = localpart or f"user{self._users}_{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(12)
        nonce = self.request("GET", "/_synapse/admin/v1/register")["nonce"]
        mac = hmac.new(self.secret.encode(), digestmod=hashlib.sha1)
        for part in (nonce.encode(), localpart.encode(), password.encode()):
            mac.update(part)
            mac.update(b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        body = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        got = self.request("POST", "/_synapse/admin/v1/register", body)
        return Account(
            got["user_id"], localpart, password, got["access_token"], got.get("device_id", "")
        )

    @property
    def admin(self) -> Account:
        if self._admin is None:
            self._admin = self.register(f"admin_{secrets.token_hex(3)}", admin=True)
        return self._admin

    def unlimit(self, user_id: str) -> None:
        """Exempt one user from rate limits (the person's phone in the default-limits
        test: only the bot has to live with Synapse's defaults)."""
        path = f"/_synapse/admin/v1/users/{urllib.parse.quote(user_id)}/override_ratelimit"
        self.request(
            "POST",
            path,
            {"messages_per_second": 0, "burst_count": 0},
            token=self.admin.access_token,
        )

    def devices(self, user_id: str) -> list[str]:
        """The user's device ids, as the admin API lists them."""
        path = f"/_synapse/admin/v2/users/{urllib.parse.quote(user_id)}/devices"
        got = self.request("GET", path, token=self.admin.access_token)
        return sorted(d["device_id"] for d in got.get("devices", []))
