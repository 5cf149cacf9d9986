"""Which thread an inbound event belongs to, when the platform cannot say.

Reply-chain sessions (Telegram without topic mode, a new bot's default) have no
platform thread: every message and every press arrives for the bare chat.  The outbox
knows which thread each message we sent belongs to, so:

* a message that replies to one of ours (or to a chain's header), where no session
  lives, belongs to that message's thread — how a reply chain is continued;
* a press belongs to the thread of the message it was pressed on.  A press on a
  message we did not send, or that the platform places in another thread than the one
  we sent it to, is placed nowhere and refused — so a crafted press on another
  session's message, or on a person's own message, can decide nothing here.

Both apply to every platform; where the platform does name a thread it must agree.
"""

from __future__ import annotations

from dataclasses import replace

from adapters.messages import ButtonPress, ThreadRef, UserMessage
from storage.db import Database
from storage.outbox_repo import MessageOrigin


def place_message(db: Database, msg: UserMessage) -> UserMessage:
    """`msg`, moved into the thread of the message it replies to where that applies."""
    if not msg.reply_to or db.bindings.by_thread_key(msg.thread.key) is not None:
        return msg
    platform, chat_id = msg.thread.platform, msg.thread.chat_id
    origin = db.outbox.origin_of_message(platform, chat_id, msg.reply_to)
    if origin is not None:
        thread = ThreadRef(platform, chat_id, origin.thread_id)
    else:  # headers are sent when the thread opens, not through the outbox
        thread = ThreadRef.reply_chain(platform, chat_id, msg.reply_to)
        if db.bindings.by_thread_key(thread.key) is None:
            return msg
    return msg if thread == msg.thread else replace(msg, thread=thread)


def place_press(db: Database, press: ButtonPress) -> ButtonPress | None:
    """`press` in the thread of the message it was pressed on; None to refuse it."""
    placed = place_press_at(db, press)
    return placed[0] if placed is not None else None


def place_press_at(db: Database, press: ButtonPress) -> tuple[ButtonPress, MessageOrigin] | None:
    """`place_press`, with the pressed message's origin (which host sent it)."""
    platform, chat_id = press.thread.platform, press.thread.chat_id
    origin = db.outbox.origin_of_message(platform, chat_id, press.message_id)
    if origin is None or press.thread.thread_id not in (None, origin.thread_id):
        return None
    thread = ThreadRef(platform, chat_id, origin.thread_id)
    return (press if thread == press.thread else replace(press, thread=thread)), origin


__all__ = ["place_message", "place_press", "place_press_at"]
