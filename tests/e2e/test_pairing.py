"""Pairing (`threadline pair`, `pair CODE`, Telegram `/start CODE`): each attack tried.

The code checks run against a real database with the daemon's real key; the chat
side runs the whole bridge with the real python-telegram-bot (and slack-bolt) against
the local fakes, and `threadline pair` / `threadline audit` run as real processes.
"""

from __future__ import annotations

import re
import stat
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from adapters.messages import Markdown, Outbound, Sender
from bridge.access.pairing import (
    MAX_FAILURES,
    Pairing,
    code_id,
    key_path,
    load_signing_key,
    normalise,
)
from storage.db import Database
from storage.models import PairingCodeRow, utcnow
from tests.e2e.test_cli import claude_login, threadline, write_config
from tests.e2e.test_e2e_matrix import _membership
from tests.support.harness import STRANGER, Harness, start_harness, stop_harness
from tests.support.matrix_harness import start_matrix_harness, stop_matrix_harness
from tests.support.matrix_phone import Phone
from tests.support.synapse import Synapse

MALLORY = Sender("telegram", str(STRANGER), "Mallory")
EVE = 7777


@pytest.fixture()
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path}/p.db")
    database.migrate()
    return database


@pytest.fixture()
def pairing(db: Database, tmp_path: Path) -> Pairing:
    return Pairing(db, load_signing_key(tmp_path / "pairing.key"))


def refusals(db: Database) -> list[str]:
    return [r.detail for r in db.audit.recent() if r.action == "pair-refused"]


# --- the codes themselves ---------------------------------------------------------------


def test_signing_key_file_is_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "data" / "pairing.key"
    first = load_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_signing_key(path).verify_key == first.verify_key, "the same key next time"


def test_a_code_is_short_typeable_and_fits_a_deep_link(pairing: Pairing) -> None:
    issued = pairing.issue()
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", issued.code), "a Telegram start parameter"
    bare = normalise(issued.code)
    assert bare is not None and len(bare) * 5 >= 50, "at least 50 random bits"
    typed = issued.code.lower().replace("-", " ").replace("0", "o")
    assert normalise(typed) == bare, "case, spaces and O-for-0 are forgiven"
    assert pairing.issue().code != issued.code
    row = pairing.db.pairing.get_code(code_id(bare))
    assert row is not None and bare not in row.payload, "the code itself is not stored"


def test_a_code_works_once(pairing: Pairing) -> None:
    code = pairing.issue().code
    assert pairing.redeem(code, MALLORY).ok
    again = pairing.redeem(code, Sender("telegram", "42"))
    assert not again.ok and "already been used" in again.message
    assert [o.key for o in pairing.db.pairing.owners()] == [MALLORY.key]


def test_an_expired_code_is_refused(db: Database, tmp_path: Path) -> None:
    key = load_signing_key(tmp_path / "pairing.key")
    earlier = Pairing(db, key, now=lambda: utcnow() - timedelta(minutes=10, seconds=1))
    code = earlier.issue().code
    result = Pairing(db, key).redeem(code, MALLORY)
    assert not result.ok and "expired" in result.message
    assert db.pairing.owners() == []
    # just inside the ten minutes it still works
    code = Pairing(db, key, now=lambda: utcnow() - timedelta(minutes=9, seconds=50)).issue().code
    assert Pairing(db, key).redeem(code, MALLORY).ok


def test_an_altered_code_row_is_refused(pairing: Pairing, db: Database) -> None:
    code = pairing.issue("slack").code
    row = db.pairing.get_code(code_id(normalise(code) or ""))
    assert row is not None
    with db.session() as s:  # someone with the database file widens the code's platform
        stored = s.get(PairingCodeRow, row.id)
        assert stored is not None
        stored.payload = row.payload.replace('"platform": "slack"', '"platform": ""')
        assert stored.payload != row.payload
        s.add(stored)
        s.commit()
    result = pairing.redeem(code, MALLORY)
    assert not result.ok and "not issued by this Threadline" in result.message
    # a genuine payload and signature copied onto another code's row
    donor, victim = pairing.issue().code, pairing.issue("matrix").code
    donor_row = db.pairing.get_code(code_id(normalise(donor) or ""))
    assert donor_row is not None
    with db.session() as s:
        stored = s.get(PairingCodeRow, code_id(normalise(victim) or ""))
        assert stored is not None
        stored.payload, stored.signature = donor_row.payload, donor_row.signature
        s.add(stored)
        s.commit()
    assert not pairing.redeem(victim, MALLORY).ok
    # and a code altered as typed is simply unknown
    wrong = code[:-1] + ("2" if code[-1] != "2" else "3")
    result = pairing.redeem(wrong, MALLORY)
    assert not result.ok and "not valid" in result.message
    assert db.pairing.owners() == []
    assert sum("bad signature" in d for d in refusals(db)) == 2


def test_a_code_signed_by_another_key_is_refused(pairing: Pairing, db: Database) -> None:
    forger = Pairing(db, SigningKey.generate())
    code = forger.issue().code  # a well-formed row, signed — but not by this daemon
    result = pairing.redeem(code, MALLORY)
    assert not result.ok and "not issued by this Threadline" in result.message
    assert db.pairing.owners() == []


def test_a_code_for_another_platform_is_refused(pairing: Pairing) -> None:
    code = pairing.issue("slack").code
    result = pairing.redeem(code, MALLORY)
    assert not result.ok and "for Slack, not Telegram" in result.message
    assert pairing.redeem(code, Sender("slack", "U0NEW00001")).ok


def test_guessing_is_limited_per_sender(pairing: Pairing, db: Database) -> None:
    good = pairing.issue().code
    for _ in range(MAX_FAILURES):
        assert "not valid" in pairing.redeem("AAAA-AAAA-AAAA", MALLORY).message
    limited = pairing.redeem(good, MALLORY)
    assert not limited.ok and "Too many" in limited.message, "even a right code, now"
    assert pairing.redeem(good, MALLORY).message == "", "told once, then silence"
    assert db.pairing.owners() == []
    later = Pairing(db, pairing.key, now=lambda: utcnow() + timedelta(minutes=61))
    fresh = later.issue().code
    assert later.redeem(fresh, MALLORY).ok, "an hour later the sender may try again"
    assert pairing.redeem(good, Sender("telegram", "42")).ok, "others are not locked out"
    actions = [r.action for r in db.audit.recent()]
    assert actions.count("pair-refused") == MAX_FAILURES and actions.count("pair-limited") == 2


def test_two_people_racing_for_one_code_one_wins(db: Database, tmp_path: Path) -> None:
    """Two threads with their own database connections (as two processes would have)
    redeem the same code at the same moment, for a number of codes: one winner each."""
    key = load_signing_key(tmp_path / "pairing.key")
    codes = [Pairing(db, key).issue().code for _ in range(8)]
    wins: list[tuple[str, str]] = []
    lock = threading.Lock()

    def redeemer(user: str, barrier: threading.Barrier, code: str) -> None:
        own = Database(db.url)
        try:
            barrier.wait(timeout=30)
            if Pairing(own, key).redeem(code, Sender("telegram", user)).ok:
                with lock:
                    wins.append((code, user))
        finally:
            own.close()

    for code in codes:
        barrier = threading.Barrier(2)
        threads = [
            threading.Thread(target=redeemer, args=(user, barrier, code)) for user in ("1", "2")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert sorted(c for c, _ in wins) == sorted(codes), "every code won exactly once"
    assert len(db.pairing.owners()) <= 2


# --- in the chat, end to end -----------------------------------------------------------


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path)
    harness.tg.add_chat(EVE, "private", first_name="Eve")
    yield harness
    await stop_harness(harness)


def as_user(user_id: int, name: str) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": name}


async def reply_in(h: Harness, chat: int, needle: str) -> str:
    m = await h.tg.wait_for(lambda m: needle in (m.visible_text or ""), chat_id=chat, timeout=30)
    return m.visible_text or ""


async def test_a_stranger_pairs_with_the_link_from_threadline_pair(
    h: Harness, tmp_path: Path
) -> None:
    mallory, eve = as_user(STRANGER, "Mallory"), as_user(EVE, "Eve")
    h.tg.user_message(STRANGER, mallory, f"/new {h.root / 'app'}")
    await reply_in(h, STRANGER, "only works for its owners")

    cfg = h.write_config(tmp_path / "config.toml")
    code_rc, out = await threadline("pair", "--platform", "telegram", "--config", str(cfg))
    assert code_rc == 0, out
    link = re.search(r"https://t\.me/threadline_test_bot\?start=([A-Za-z0-9_-]+)", out)
    assert link, out
    code = link.group(1)
    assert "▄" in out or "█" in out, "a QR code in the terminal"
    key_file = key_path(h.config)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    # opening the deep link sends "/start CODE"; Eve sends the same code at once
    h.tg.user_message(STRANGER, mallory, f"/start {code}")
    h.tg.user_message(EVE, eve, f"/pair {code}")

    def outcome(chat: int) -> str | None:
        texts = " ".join(m.visible_text or "" for m in h.tg.messages(chat))
        return "won" if "Paired" in texts else "lost" if "already been used" in texts else None

    await h.tg.wait_until(lambda: outcome(STRANGER) and outcome(EVE), timeout=30)
    assert sorted([outcome(STRANGER), outcome(EVE)]) == ["lost", "won"], "exactly one wins"
    winner, loser = (STRANGER, EVE) if outcome(STRANGER) == "won" else (EVE, STRANGER)
    people = {STRANGER: mallory, EVE: eve}

    before = set(h.tg.topics(winner))
    h.tg.user_message(winner, people[winner], f"/new {h.root / 'app'}")
    await h.tg.wait_until(lambda: set(h.tg.topics(winner)) - before or None, timeout=30)
    h.tg.user_message(loser, people[loser], f"/new {h.root / 'app'}")
    await reply_in(h, loser, "only works for its owners")

    code_rc, out = await threadline("audit", "--config", str(cfg))
    assert code_rc == 0, out
    for needle in ("pair-issue", f"telegram:{winner}", "pair-refused", "already used"):
        assert needle in out, needle
    assert code not in out, "the code itself is never logged"


async def test_a_paired_owner_survives_a_restart(tmp_path: Path) -> None:
    first = await start_harness(tmp_path)
    mallory = as_user(STRANGER, "Mallory")
    try:
        code = first.bridge.pairing.issue("telegram").code
        first.tg.user_message(STRANGER, mallory, f"/pair {code}")
        await reply_in(first, STRANGER, "Paired")
    finally:
        await stop_harness(first, keep_fakes=True)
    h = await start_harness(tmp_path, tg=first.tg, model=first.model)
    try:
        assert h.bridge.access.is_owner(MALLORY)
        assert f"telegram:{STRANGER}" in h.bridge.adapters["telegram"].owners_hint  # type: ignore[attr-defined]
        before = set(h.tg.topics(STRANGER))
        h.tg.user_message(STRANGER, mallory, f"/new {h.root / 'app'}")
        await h.tg.wait_until(lambda: set(h.tg.topics(STRANGER)) - before or None, timeout=30)
    finally:
        await stop_harness(h)


async def test_threadline_pair_without_telegram_prints_the_code(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    write_config(
        cfg, tmp_path, token="123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ", base_url="http://127.0.0.1:9/bot"
    )
    rc, out = await threadline("pair", "--config", str(cfg))
    assert rc == 0, out
    assert "could not be reached" in out and "t.me" not in out
    code = re.search(r"Pairing code: (\S+)", out)
    assert code is not None
    # Hints are shown as meant (no markup tags), and no QR code of a bare command.
    assert f"send /start {code.group(1)} (or /pair {code.group(1)}) to the bot" in out
    assert "[bold]" not in out and "QR code" not in out
    rc, out = await threadline("pair", "--platform", "slack", "--config", str(cfg))
    assert rc == 1 and "not enabled" in out
    rc, out = await threadline("pair", "--help")
    assert rc == 0 and "--platform" in out and "--config" in out


async def test_slack_pairing_teaches_the_adapter_its_new_owner(tmp_path: Path) -> None:
    from tests.support.slack_harness import STRANGER as SLACK_STRANGER
    from tests.support.slack_harness import start_slack_harness, stop_slack_harness

    h = await start_slack_harness(tmp_path, speed=10.0)
    try:
        dm = h.slack.add_dm(SLACK_STRANGER)
        code = h.bridge.pairing.issue("slack").code
        assert SLACK_STRANGER not in h.adapter.owners
        h.say(f"!pair {code.lower()}", user=SLACK_STRANGER, channel=dm)
        await h.slack.wait_for(lambda m: "Paired" in m.visible_text, channel=dm)
        assert SLACK_STRANGER in h.adapter.owners, "mentioned and streamed to from now on"
        assert h.bridge.access.is_owner(Sender("slack", SLACK_STRANGER))
        h.say("!sessions", user=SLACK_STRANGER, channel=dm)
        await h.slack.wait_for(lambda m: "No sessions yet" in m.visible_text, channel=dm)
        prompt = Outbound((Markdown("🔐 Allow Bash?"),), notify=True, mention=True)
        rendered = h.adapter.render(prompt)
        assert f"<@{SLACK_STRANGER}>" in str(rendered[0].payload), "the new owner is mentioned"
    finally:
        await stop_slack_harness(h)


async def test_matrix_newcomer_invites_the_bot_while_a_code_is_open(
    tmp_path: Path, synapse: Synapse
) -> None:
    h = await start_matrix_harness(tmp_path, synapse)
    newcomer = await Phone(synapse.base_url, synapse.register(), tmp_path / "newcomer").start()
    bot = h.bot.user_id
    try:
        room = await newcomer.create_room([bot], name="pairing")
        await newcomer.wait(lambda: _membership(synapse, room, bot) == "leave" or None, 20)

        code = h.bridge.pairing.issue("matrix").code
        await newcomer.client.room_invite(room, bot)  # again, now that a code is open
        await newcomer.wait_member(room, bot)
        await newcomer.say(room, f"!pair {code}")
        await newcomer.wait_message(lambda m: m.sender == bot and "Paired" in m.body)
        assert newcomer.user_id in h.adapter.owners
        assert h.adapter.receiver is not None and newcomer.user_id in h.adapter.receiver.owners
        invites = [(r.detail, r.allowed) for r in h.db.audit.recent() if r.action == "pair-invite"]
        assert invites == [
            ("accepted: a pairing code is open", True),
            ("declined: not an owner", False),
        ]
    finally:
        await newcomer.stop()
        await stop_matrix_harness(h)


async def test_doctor_counts_paired_owners(tmp_path: Path) -> None:
    from tests.support.fakes.telegram import FakeTelegram

    async with FakeTelegram(has_topics_enabled=True) as tg:
        cfg = tmp_path / "config.toml"
        write_config(cfg, tmp_path, token=tg.token, base_url=tg.base_url, owners="[]")
        rc, out = await threadline("doctor", "--config", str(cfg))
        assert rc == 1 and "threadline pair" in out, out
        db = Database(f"sqlite:///{tmp_path}/t.db")
        db.migrate()
        pairing = Pairing(db, load_signing_key(tmp_path / "pairing.key"))
        assert pairing.redeem(pairing.issue().code, Sender("telegram", "1001")).ok
        db.close()
        rc, out = await threadline("doctor", "--config", str(cfg), env=claude_login(tmp_path))
        assert rc == 0, out
