"""The bot's state directory (`[matrix] store_path`): what must survive a restart.

- nio's SQLite crypto store (olm account, olm and megolm sessions, device trust,
  the sync token), named by nio after the user and device;
- `credentials.json`: homeserver, user id, device id and access token of the login,
  so a restart restores the same device instead of logging in as a new one (a new
  device would need its keys shared and trusted all over again);
- `pickle.key`: a random passphrase nio encrypts the crypto store's olm pickles
  with (instead of nio's well-known default), created once;
- `buttons.json`: which reactions on which of our messages stand for which button.
- `inbox.db`: the sync position up to which events were handled, the ids of recently
  handled events and events still waiting for their room key (`adapters/matrix/inbox.py`).

The directory is created with mode 0700 and secrets are written with mode 0600.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Credentials:
    homeserver: str
    user_id: str
    device_id: str
    access_token: str


def _write_secret(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class MatrixStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()

    def prepare(self) -> None:
        """Create the directory (0700) and check that it is writable."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        probe = self.path / ".write-test"
        probe.write_text("ok")
        probe.unlink()

    @property
    def credentials_file(self) -> Path:
        return self.path / "credentials.json"

    @property
    def buttons_file(self) -> Path:
        return self.path / "buttons.json"

    def load_credentials(self) -> Credentials | None:
        try:
            raw = json.loads(self.credentials_file.read_text())
            return Credentials(
                str(raw["homeserver"]),
                str(raw["user_id"]),
                str(raw["device_id"]),
                str(raw["access_token"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save_credentials(self, creds: Credentials) -> None:
        _write_secret(self.credentials_file, json.dumps(asdict(creds)))

    def pickle_key(self) -> str:
        """The crypto store's passphrase, created on first use."""
        path = self.path / "pickle.key"
        try:
            key = path.read_text().strip()
            if key:
                return key
        except OSError:
            pass
        key = secrets.token_urlsafe(32)
        _write_secret(path, key)
        return key

    def has_crypto_store(self, user_id: str, device_id: str) -> bool:
        return (self.path / f"{user_id}_{device_id}.db").exists()
