"""Paired owners are signed and revocable (`bridge/access/owners.py`, `threadline unpair`).

A row written into the database by anyone without the daemon's key makes no owner;
rows from before signing make none either (and the daemon says how to re-pair);
`threadline unpair`, run as a real process next to the running daemon, makes the
next message of that person a stranger's — no restart."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey
from sqlalchemy import text

from adapters.messages import Sender
from bridge.access.owners import PairedOwners
from bridge.access.pairing import load_signing_key
from storage.db import Database
from storage.models import PairedOwner
from tests.e2e.test_cli import threadline
from tests.support.harness import OWNER, STRANGER, Harness, start_harness, stop_harness

EVE = 7777


@pytest.fixture()
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path}/o.db")
    database.migrate()
    return database


def insert(db: Database, key: str, signature: str = "", code_id: str = "") -> None:
    with db.session() as s:
        s.add(PairedOwner(key=key, platform=key.partition(":")[0], code_id=code_id,
                          signature=signature))  # fmt: skip
        s.commit()


def test_only_rows_signed_by_the_daemons_key_make_owners(db: Database, tmp_path: Path) -> None:
    owners = PairedOwners(db, load_signing_key(tmp_path / "pairing.key"))
    owners.add("telegram:1", "telegram", "c1")
    assert owners.is_owner("telegram:1")
    insert(db, "telegram:2")  # unsigned: before signing, or forged
    insert(db, "telegram:3", signature="00" * 64)
    other = PairedOwners(db, SigningKey.generate())
    other.add("telegram:4", "telegram", "c4")  # signed by another key
    row = db.pairing.get_owner("telegram:1")
    assert row is not None
    insert(db, "telegram:5", signature=row.signature, code_id="c1")  # a copied signature
    insert(db, "slack:U6", signature=row.signature, code_id="c1")
    for key in ("telegram:2", "telegram:3", "telegram:4", "telegram:5", "slack:U6"):
        assert not owners.is_owner(key), key
    assert [o.key for o in owners.owners()] == ["telegram:1"]
    with db.session() as s:  # the platform altered on a signed row
        signed = s.get(PairedOwner, "telegram:1")
        assert signed is not None
        signed.platform = "slack"
        s.add(signed)
        s.commit()
    assert not owners.is_owner("telegram:1")


def test_rows_from_before_signing_are_refused_with_how_to_re_pair(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    old = Database(url)
    old.migrate()
    with old.engine.begin() as conn:  # back to migration 4: no signature column
        conn.execute(text("ALTER TABLE paired_owners DROP COLUMN signature"))
        conn.execute(text("UPDATE schema_version SET version = 4"))
        conn.execute(
            text(
                "INSERT INTO paired_owners (key, platform, code_id, paired_at) "
                "VALUES ('telegram:42', 'telegram', 'abc', '2026-01-01 00:00:00')"
            )
        )
    old.close()
    db = Database(url)
    assert db.migrate() >= 5
    owners = PairedOwners(db, load_signing_key(tmp_path / "pairing.key"))
    assert not owners.is_owner("telegram:42")
    with caplog.at_level(logging.WARNING):
        owners.warn_invalid()
    assert "telegram:42" in caplog.text and "threadline pair" in caplog.text
    owners.add("telegram:42", "telegram", "new")  # pairing again signs the row
    assert owners.is_owner("telegram:42")


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path)
    harness.tg.add_chat(EVE, "private", first_name="Eve")
    yield harness
    await stop_harness(harness)


def as_user(user_id: int, name: str) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": name}


async def new_works(h: Harness, chat: int, user: dict[str, Any]) -> bool:
    """Send `/new` as `user`; True if a topic opened, False if refused."""
    before = set(h.tg.topics(chat))
    mark = max((m.message_id for m in h.tg.messages(chat)), default=0)
    h.tg.user_message(chat, user, f"/new {h.root / 'app'}")

    def outcome() -> str | None:
        if set(h.tg.topics(chat)) - before:
            return "opened"
        fresh = [m for m in h.tg.messages(chat) if m.message_id > mark]
        if any("only works for its owners" in (m.visible_text or "") for m in fresh):
            return "refused"
        if any(a.user == f"telegram:{user['id']}" and a.action.startswith("refused")
               and a.detail.startswith("new") for a in h.db.audit.recent(5)):  # fmt: skip
            return "refused"
        return None

    return await h.tg.wait_until(outcome, timeout=30) == "opened"


async def test_a_forged_owner_row_makes_no_owner_even_after_a_restart(tmp_path: Path) -> None:
    first = await start_harness(tmp_path)
    insert(first.db, f"telegram:{EVE}")  # written by someone without the key
    await stop_harness(first, keep_fakes=True)
    h = await start_harness(tmp_path, tg=first.tg, model=first.model)
    try:
        h.tg.add_chat(EVE, "private", first_name="Eve")
        assert not h.bridge.access.is_owner(Sender("telegram", str(EVE), "Eve"))
        assert not await new_works(h, EVE, as_user(EVE, "Eve"))
        assert f"telegram:{EVE}" not in h.bridge.adapters["telegram"].owners_hint  # type: ignore[attr-defined]
    finally:
        await stop_harness(h)


async def test_unpair_revokes_a_paired_owner_in_the_running_daemon(
    h: Harness, tmp_path: Path
) -> None:
    mallory = as_user(STRANGER, "Mallory")
    code = h.bridge.pairing.issue("telegram").code
    h.tg.user_message(STRANGER, mallory, f"/pair {code}")
    await h.tg.wait_for(lambda m: "Paired" in (m.visible_text or ""), chat_id=STRANGER)
    assert await new_works(h, STRANGER, mallory)
    adapter: Any = h.bridge.adapters["telegram"]
    assert f"telegram:{STRANGER}" in adapter.owners_hint

    cfg = h.write_config(tmp_path / "config.toml")
    rc, out = await threadline("pair", "--list", "--config", str(cfg))
    assert rc == 0, out
    assert f"telegram:{STRANGER}" in out and f"telegram:{OWNER}" in out
    rc, out = await threadline("unpair", f"telegram:{STRANGER}", "--config", str(cfg))
    assert rc == 0 and "no longer an owner" in out, out

    assert not await new_works(h, STRANGER, mallory), "refused at once, no restart"
    await h.tg.wait_until(
        lambda: f"telegram:{STRANGER}" not in adapter.owners_hint or None, timeout=20
    )
    assert any(a.action == "unpair" and a.user == "cli" for a in h.db.audit.recent(20))

    rc, out = await threadline("unpair", f"telegram:{STRANGER}", "--config", str(cfg))
    assert rc == 1 and "not a paired owner" in out
    rc, out = await threadline("unpair", f"telegram:{OWNER}", "--config", str(cfg))
    assert rc == 1 and "config file" in out
    rc, out = await threadline("--help")
    assert "unpair" in out
