"""Real `threadline run` processes for the multi-host tests: one per host name, each
with its own data dir, allowed root and log, all on one database and one fake Bot API.

Each daemon reaches the fake under a host name of its own where one is free
(127.0.0.1, localhost), so the fake tells their calls apart (`FakeTelegram.calls_via`);
its log says which host is the gateway and when that changes.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from tests.support.fakes.telegram import FakeTelegram
from tests.support.harness import OWNER, config_text

ROOT = Path(__file__).resolve().parents[2]


class Daemon:
    """One daemon process: its host name, data dir, root (`code/`), config and log."""

    def __init__(
        self, name: str, via: str, tmp: Path, tg: FakeTelegram, db_url: str, *, extra: str = ""
    ) -> None:
        self.name, self.via = name, via
        self.dir = tmp / name
        self.dir.mkdir()
        self.root = self.dir / "code"
        (self.root / "app").mkdir(parents=True)
        self.log = self.dir / "daemon.log"
        self.cfg = self.dir / "config.toml"
        text = config_text(tg=tg, root=self.root, db_url=db_url, chat_id=OWNER, extra=extra)
        self.cfg.write_text(
            text.replace(tg.base_url, tg.base_url.replace("127.0.0.1", via))
            + f'[daemon]\nhost = "{name}"\ndata_dir = "{self.dir}"\nlog_file = "{self.log}"\n'
        )
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, env: dict[str, str]) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.cli", "run", "--config", str(self.cfg),
            cwd=ROOT, env=env,
        )  # fmt: skip

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def said(self, needle: str) -> int:
        """How many lines of this daemon's log contain `needle`."""
        try:
            return sum(needle in line for line in self.log.read_text().splitlines())
        except FileNotFoundError:
            return 0

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout=30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


__all__ = ["Daemon"]
