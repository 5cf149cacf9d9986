"""The daemon's files are the owner's alone, whatever the umask: started as a real
`threadline run` process with umask 022 (files 0644, directories 0755 by default),
the database and SQLite's `-wal`/`-shm`, the log, the storage key and the pairing
key are 0600 and the directories made for them 0700.  Files an older version left
readable to others are tightened on start."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
from pathlib import Path

from bridge.cli.logs import private_log_file
from storage.db import Database
from tests.support.fakes.telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_daemon_started_with_umask_022_keeps_its_files_private(tmp_path: Path) -> None:
    data, keys, logs = tmp_path / "data", tmp_path / "keys", tmp_path / "logs"
    (tmp_path / "code").mkdir()
    async with FakeTelegram(has_topics_enabled=True) as tg:
        cfg = tmp_path / "config.toml"
        cfg.write_text(
            f"""
[storage]
url = "sqlite:///{data}/threadline.db"
encrypt = true
key_file = "{keys}/secret.key"
[agent]
allowed_roots = ["{tmp_path}/code"]
[access]
owners = ["telegram:1001"]
[telegram]
enabled = true
token = "{tg.token}"
base_url = "{tg.base_url}"
[daemon]
log_file = "{logs}/daemon.log"
"""
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.cli", "run", "--config", str(cfg),
            cwd=ROOT, preexec_fn=lambda: os.umask(0o022),
        )  # fmt: skip
        try:
            await tg.wait_until(lambda: tg.calls["getUpdates"] > 0 or None, timeout=60)
            db = data / "threadline.db"
            files = {
                db: 0o600,
                db.with_name("threadline.db-wal"): 0o600,
                db.with_name("threadline.db-shm"): 0o600,
                data / "pairing.key": 0o600,
                data / "run" / "attach.sock": 0o600,
                keys / "secret.key": 0o600,
                logs / "daemon.log": 0o600,
                data: 0o700,
                data / "run": 0o700,
                keys: 0o700,
                logs: 0o700,
            }
            found = {path: mode(path) for path in files}
            assert found == files, {str(p): oct(m) for p, m in found.items()}
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), timeout=30) == 0


def test_files_an_older_version_left_readable_are_tightened(tmp_path: Path) -> None:
    db = tmp_path / "threadline.db"
    seed = Database(f"sqlite:///{db}")
    seed.migrate()
    seed.close()
    log = tmp_path / "daemon.log"
    log.write_text("old lines\n")
    for path in (db, log):
        path.chmod(0o644)
    again = Database(f"sqlite:///{db}")
    again.migrate()
    private_log_file(str(log))
    assert mode(db) == 0o600 and mode(log) == 0o600
    assert log.read_text() == "old lines\n", "appended to, not truncated"
    again.close()
