"""Placing inbound events in their thread (`bridge/placement.py`), on every platform:
a press in the thread of the message it was pressed on (as the outbox recorded it),
refused when that message is not ours or the platform says another thread; a reply
in the thread of the message it answers.  Against a real outbox and database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.messages import ButtonPress, Sender, ThreadRef, UserMessage, text
from bridge.outbox.outbox import Outbox
from bridge.placement import place_message, place_press
from storage.db import Database
from storage.models import SessionRow, ThreadBinding
from tests.integration.test_outbox import FakePlatform, P

CHAT = ThreadRef(P, "chat1")
CHAIN = ThreadRef(P, "chat1", "reply:100")
OTHER_CHAIN = ThreadRef(P, "chat1", "reply:200")
TOPIC = ThreadRef(P, "chat1", "7")
ADA = Sender(P, "1", "Ada")


@pytest.fixture
async def sent(tmp_path: Path) -> Any:
    """A database where one message of ours was sent into each of four threads."""
    db = Database(f"sqlite:///{tmp_path}/t.db")
    db.migrate()
    outbox = Outbox(db, {P: FakePlatform()}, retry_initial=0.01, retry_max=0.05)
    await outbox.start()
    ids: dict[str, str] = {}
    for name, thread in (
        ("chain", CHAIN),
        ("other", OTHER_CHAIN),
        ("topic", TOPIC),
        ("chat", CHAT),
    ):
        row = outbox.enqueue(thread, text(name))[0]
        ids[name] = await outbox.wait_sent(row, timeout=5)
    db.sessions.add(SessionRow(id="s1", platform=P, cwd="/w", title="t", owner=ADA.key))
    db.bindings.add(
        ThreadBinding(
            session_id="s1",
            platform=P,
            chat_id="chat1",
            thread_id=CHAIN.thread_id,
            header_message_id="100",
            kind="reply",
            thread_key=CHAIN.key,
        )
    )
    yield db, ids
    await outbox.stop(grace=0.5)
    db.close()


def press(thread: ThreadRef, message_id: str) -> ButtonPress:
    return ButtonPress(thread, ADA, message_id, "p:req:a")


async def test_a_press_goes_to_the_thread_of_its_message(sent: Any) -> None:
    db, ids = sent
    placed = place_press(db, press(CHAT, ids["chain"]))  # a reply chain: the bare chat
    assert placed is not None and placed.thread == CHAIN
    assert place_press(db, press(CHAT, ids["other"])).thread == OTHER_CHAIN  # type: ignore[union-attr]
    assert place_press(db, press(TOPIC, ids["topic"])).thread == TOPIC  # type: ignore[union-attr]
    assert place_press(db, press(CHAT, ids["chat"])).thread == CHAT  # type: ignore[union-attr]


async def test_a_press_on_a_message_not_ours_or_out_of_place_is_refused(sent: Any) -> None:
    db, ids = sent
    assert place_press(db, press(CHAT, "999999")) is None, "not a message we sent"
    assert place_press(db, press(CHAT, "100")) is None, "a header carries no buttons"
    assert place_press(db, press(ThreadRef(P, "chat2"), ids["chain"])) is None, "another chat"
    assert place_press(db, press(TOPIC, ids["chat"])) is None, "the platform says elsewhere"
    assert place_press(db, press(ThreadRef(P, "chat1", "8"), ids["topic"])) is None


async def test_a_reply_goes_to_the_thread_of_the_message_it_answers(sent: Any) -> None:
    db, ids = sent

    def reply(to: str | None, thread: ThreadRef = CHAT) -> UserMessage:
        return UserMessage(thread, ADA, "go on", "555", reply_to=to)

    assert place_message(db, reply(ids["chain"])).thread == CHAIN
    assert place_message(db, reply("100")).thread == CHAIN, "a reply to the chain's header"
    assert place_message(db, reply("999999")).thread == CHAT, "not ours: stays where it is"
    assert place_message(db, reply(None)).thread == CHAT
    assert place_message(db, reply(ids["other"], CHAIN)).thread == CHAIN, "already in a session"
