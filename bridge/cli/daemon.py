"""`threadline run`: build every part from the config and run until a signal.

Order: logging (with secret redaction) → the process environment cleared of
Threadline's secrets and its own virtualenv (`agent/environment.py`: nothing the
daemon spawns — Claude Code and every tool it runs, `git` — inherits a chat token)
→ database (migrated) → adapters for the enabled platforms → the bridge (outbox,
agent host, broker) → wait for SIGINT or SIGTERM → stop everything in reverse.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from adapters.base import ChatAdapter
from adapters.registry import PLATFORMS
from agent.environment import agent_environment, own_virtualenvs
from bridge.access.owners import PairedOwners
from bridge.access.pairing import key_path, load_signing_key
from bridge.app import Bridge
from bridge.cli.logs import setup_logging
from bridge.cli.single import only_daemon
from bridge.config import Config
from bridge.startup import StartupError
from storage.crypto import BodyCipher, load_or_create_key
from storage.db import Database, StorageError

log = logging.getLogger(__name__)


def open_database(config: Config) -> Database:
    cipher = BodyCipher(
        load_or_create_key(Path(config.storage.key_file)) if config.storage.encrypt else None
    )
    db = Database(config.storage.url, cipher=cipher)
    db.migrate()
    return db


def all_owners(config: Config) -> list[str]:
    """The config's owners and those paired so far (for `threadline doctor`)."""
    try:
        db = open_database(config)
    except Exception:  # doctor reports the database on its own
        return list(config.access.owners)
    try:
        paired = PairedOwners(db, load_signing_key(key_path(config)))
        return [*config.access.owners, *(o.key for o in paired.owners())]
    finally:
        db.close()


def build_adapters(config: Config) -> dict[str, ChatAdapter]:
    """An adapter for every enabled platform, by platform name."""
    return {
        p.name: p.create(config.platform(p.name), config.access.owners)
        for p in PLATFORMS
        if config.platform(p.name).enabled
    }


def claude_environment(config: Config) -> dict[str, str]:
    """The environment Claude Code gets from a daemon on `config` (for `threadline
    claude`): this process's, without Threadline's secrets or its virtualenv."""
    return agent_environment(
        os.environ,
        secrets=config.secrets(min_chars=1),
        venvs=own_virtualenvs(sys.prefix, sys.base_prefix, os.environ),
    )


def confine_environment(config: Config) -> dict[str, str]:
    """Reduce this process's environment to what Claude Code may see; that environment.

    Done in the process itself because the SDK starts the CLI with ``os.environ``
    under its options' env: a name can only be kept from the CLI by removing it here.
    """
    wanted = claude_environment(config)
    removed = sorted(name for name in os.environ if name not in wanted)
    for name in removed:
        del os.environ[name]
    os.environ.update(wanted)
    if removed:
        log.info("kept from Claude Code's environment: %s", ", ".join(removed))
    return wanted


async def run_daemon(
    config: Config,
    *,
    stop_event: asyncio.Event | None = None,
    agent_env: Mapping[str, str] | None = None,
) -> None:
    db = open_database(config)
    adapters = build_adapters(config)
    if not adapters:
        raise SystemExit("no usable chat platform is enabled")
    bridge = Bridge(config, db, adapters, agent_env=agent_env)
    stop = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        # A start that waits for the network gives way to Ctrl-C / SIGTERM.
        starting = asyncio.ensure_future(bridge.start())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait((starting, stopping), return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # a StartupError ends the daemon here
            log.info("threadline is running (%s); Ctrl-C stops it", ", ".join(adapters))
            await stopping
        else:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
    finally:
        log.info("stopping")
        await bridge.stop()
        db.close()


def run(config: Config) -> None:
    """Run until a signal; a start-up failure is one line on stderr and exit status 1."""
    setup_logging(config.daemon.log_level, config.secrets(), config.daemon.log_file)
    agent_env = confine_environment(config)
    try:
        with only_daemon(config):
            asyncio.run(run_daemon(config, agent_env=agent_env))
    except (StartupError, StorageError) as e:
        log.debug("start-up failed", exc_info=True)
        raise SystemExit(f"threadline: {e}") from None
