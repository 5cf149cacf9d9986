"""Emoji verification answered where the homeserver cannot reach (issue 15, point 3):
Element's own crypto stack (`element_js`) verifies the bot user in the DM against the
real Synapse, the whole daemon is the bot, and the person compares the emoji with
`threadline verify` - the real console script on the daemon's database.

The bot must not say "they match" (send its MAC) before the person confirmed there:
with the phone's MAC already in, the phone still waits; `confirm` then verifies,
`cancel` cancels with m.mismatched_sas, and no answer times out and is marked so.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.matrix.e2ee.room_verification import RoomSasResponder
from tests.support.element_harness import (
    TG_OWNER,
    World,
    start_world,
    stop_world,
    threadline,
    timing,
)
from tests.support.fakes.telegram import FakeTelegram
from tests.support.synapse import Synapse

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture()
async def w(tmp_path: Path, synapse: Synapse) -> AsyncIterator[World]:
    world = await start_world(tmp_path, synapse)
    yield world
    await stop_world(world)


def responder(w: World) -> RoomSasResponder:
    sas = w.adapter._room_sas
    assert sas is not None
    return sas


async def start(w: World) -> tuple[int, str, list[tuple[str, str]]]:
    """The phone starts "Verify user" in the DM; its vid, the transaction and emoji."""
    started = await w.phone.call("verify_user", user_id=w.bot.user_id, room_id=w.room)
    vid = int(started["vid"])
    emoji = await w.phone.wait_emoji(vid)
    return vid, str(w.phone.verification(vid)["transaction_id"]), emoji


def bot_sent(w: World, step: str) -> bool:
    return any(
        e.type == f"m.key.verification.{step}" and e.sender == w.bot.user_id
        for e in w.phone.room_events(w.room)
    )


async def test_threadline_verify_shows_the_phones_emoji_and_confirm_verifies(w: World) -> None:
    t0 = time.time()
    vid, txn, emoji = await start(w)
    row = await w.phone.wait(lambda: w.db.sas.get(txn), 10)
    code, out, _ = await threadline(w, "verify")
    assert code == 0, out
    listed = out.splitlines()
    head = next(i for i, line in enumerate(listed) if line.startswith(f"#{row.id} "))
    assert w.person.user_id in listed[head] and str(w.phone.verification(vid)["transaction_id"])
    # the same emoji, with the same names (the spec's), as Element shows
    assert listed[head + 1].split() == [e for e, _ in emoji]
    assert listed[head + 2].strip().split(", ") == [n for _, n in emoji]

    await w.phone.call("verify_confirm", vid=vid)  # "They match" on the phone
    await w.phone.wait(lambda: responder(w)._runs[txn].their_mac, 20)
    assert not bot_sent(w, "mac") and not w.phone.phase_seen(vid, "Verified"), "no MAC yet"
    assert not (await w.phone.user_status(w.bot.user_id))["is_verified"]

    code, out, _ = await threadline(w, "verify", "confirm", str(row.id))
    assert code == 0 and "confirmed" in out, out
    await w.phone.wait(lambda: w.phone.phase_seen(vid, "Verified"), 30)
    timing("user verification with threadline verify: request -> verified", time.time() - t0)
    await w.phone.wait_trusted(w.bot.user_id)
    user = await w.phone.user_status(w.bot.user_id)
    assert user["is_verified"] and user["cross_signing_verified"], user
    done = await w.phone.wait(lambda: (r := w.db.sas.get(txn)) and r.state == "verified" and r, 10)
    assert done.decision == "confirm" and done.decided_by.startswith("cli:")
    code, out, err = await threadline(w, "verify", "cancel", str(row.id))
    assert code == 1 and "not waiting" in err, "a decided verification stays decided"


async def test_threadline_verify_cancel_tells_the_phone_mismatched_sas(w: World) -> None:
    vid, txn, _ = await start(w)
    row = await w.phone.wait(lambda: w.db.sas.get(txn), 10)
    assert [r.transaction_id for r in w.db.sas.pending()] == [txn]
    code, out, _ = await threadline(w, "verify", "cancel", f"#{row.id}")
    assert code == 0 and "cancelled" in out, out
    await w.phone.wait(lambda: w.phone.phase_seen(vid, "Cancelled"), 20)
    assert w.phone.verification(vid)["cancel_code"] == "m.mismatched_sas"
    assert not bot_sent(w, "mac")
    ended = await w.phone.wait(lambda: (r := w.db.sas.get(txn)) and r.state != "pending" and r)
    assert (ended.state, ended.cancel_code) == ("cancelled", "m.mismatched_sas")
    assert not (await w.phone.user_status(w.bot.user_id))["is_verified"]
    code, out, _ = await threadline(w, "verify")
    assert "No verification is waiting." in out


async def test_an_unanswered_verification_times_out_and_is_marked_so(w: World) -> None:
    responder(w).sas_timeout = 4.0  # Element's own is minutes; the same path, sooner
    vid, txn, _ = await start(w)
    await w.phone.call("verify_confirm", vid=vid)  # the phone says they match; nobody else
    await w.phone.wait(lambda: w.phone.phase_seen(vid, "Cancelled"), 30)
    assert w.phone.verification(vid)["cancel_code"] == "m.timeout"
    assert not bot_sent(w, "mac") and not w.phone.phase_seen(vid, "Verified")
    ended = await w.phone.wait(lambda: (r := w.db.sas.get(txn)) and r.state != "pending" and r)
    assert ended.state == "timed_out"


@pytest.fixture()
async def wt(tmp_path: Path, synapse: Synapse) -> AsyncIterator[tuple[World, FakeTelegram]]:
    tg = await FakeTelegram().start()
    world = await start_world(tmp_path, synapse, tg=tg)
    yield world, tg
    await stop_world(world)
    await tg.stop()


async def test_with_telegram_too_the_owner_confirms_there(
    wt: tuple[World, FakeTelegram],
) -> None:
    w, tg = wt
    t0 = time.time()
    vid, txn, emoji = await start(w)
    msg = await tg.wait_for(lambda m: "is verifying this bot" in (m.visible_text or ""), 20)
    assert msg.chat_id == TG_OWNER and w.person.user_id in msg.visible_text
    assert all(e in msg.visible_text for e, _ in emoji), "the emoji the phone shows"
    assert ", ".join(n for _, n in emoji) in msg.visible_text, "with the spec's names"
    await w.phone.call("verify_confirm", vid=vid)
    await w.phone.wait(lambda: responder(w)._runs[txn].their_mac, 20)
    assert not bot_sent(w, "mac") and not w.phone.phase_seen(vid, "Verified"), "no MAC yet"

    tg.press_button(TG_OWNER, msg.message_id, msg.callback_data("✅ They match"), TG_OWNER)
    await w.phone.wait(lambda: w.phone.phase_seen(vid, "Verified"), 30)
    timing("user verification confirmed on Telegram: request -> verified", time.time() - t0)
    await w.phone.wait_trusted(w.bot.user_id)  # Element shows the bot user verified
    row = await w.phone.wait(lambda: (r := w.db.sas.get(txn)) and r.state == "verified" and r)
    assert row.decided_by == f"telegram:{TG_OWNER}"
    # the CLI comes too late: the first decision won
    code, _, err = await threadline(w, "verify", "cancel", str(row.id))
    assert code == 1 and "not waiting" in err


async def test_a_dont_match_press_on_telegram_cancels(wt: tuple[World, FakeTelegram]) -> None:
    w, tg = wt
    vid, _, _ = await start(w)
    msg = await tg.wait_for(lambda m: "is verifying this bot" in (m.visible_text or ""), 20)
    tg.press_button(TG_OWNER, msg.message_id, msg.callback_data("❌ They don't match"), TG_OWNER)
    await w.phone.wait(lambda: w.phone.phase_seen(vid, "Cancelled"), 20)
    assert w.phone.verification(vid)["cancel_code"] == "m.mismatched_sas"
    assert not bot_sent(w, "mac")
