"""Delivery classes in the outbox: a person waiting on Claude goes first.

Across the threads of a chat the outbox delivers prompts, then finals, then notices,
then stream updates (`storage/outbox_pick.py`); inside a thread it keeps order, except
that a more urgent row passes stream updates that nobody has seen, and a prompt passes
its own thread's status message not yet sent.  Against `FakePlatform`, the strict
fake chat API of `test_outbox.py`.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

import storage.db as db_module
from adapters.messages import Markdown, Outbound, Role, ThreadRef, text
from bridge.outbox.classes import class_of
from bridge.outbox.outbox import Outbox
from storage.db import Database
from storage.outbox_pick import OUTBOX, DeliveryClass, T
from tests.integration.test_outbox import A, B, FakePlatform, P, db, db_url, make_outbox

__all__ = ["db", "db_url", "make_outbox"]  # fixtures, used by name

C = ThreadRef(P, "chat1", "C")
CONTROL = ThreadRef(P, "chat1", None)  # where /new was typed


def msg(body: str, role: Role) -> Outbound:
    return Outbound((Markdown(body),), role=role)


def order(fake: FakePlatform) -> list[tuple[str, str | None, str]]:
    return [(c.op, c.thread_id, c.text) for c in fake.calls]


def test_the_class_follows_the_role() -> None:
    assert class_of(msg("p", "prompt")) is DeliveryClass.PROMPT
    assert class_of(msg("f", "final")) is DeliveryClass.FINAL
    assert class_of(msg("d", "done")) is DeliveryClass.FINAL
    assert class_of(text("n")) is DeliveryClass.NOTICE
    assert class_of(msg("s", "status")) is DeliveryClass.STREAM
    # the producers' old "priority=1" still means a stream update, whatever the role
    assert class_of(text("tool line"), priority=1) is DeliveryClass.STREAM
    assert class_of(text("n"), klass=DeliveryClass.PROMPT) is DeliveryClass.PROMPT


async def test_a_prompt_from_one_thread_goes_before_every_other_threads_rows(
    make_outbox: Any,
) -> None:
    """Six sessions' decoration queued ahead, then one prompt: the prompt is first,
    then the answer, then notices, then the status messages."""
    fake = FakePlatform(rate=40, burst=1)
    outbox: Outbox = make_outbox(fake)
    status_a = outbox.enqueue(A, msg("status A", "status"))[0]
    await outbox.start()
    await outbox.wait_sent(status_a, timeout=5)
    await outbox.stop(grace=1)
    outbox.enqueue(CONTROL, text("started C"))
    outbox.enqueue(C, msg("status C", "status"))
    outbox.enqueue_edit(A, status_a, msg("A streaming", "status"), priority=1, stream_key="sa")
    outbox.enqueue(C, text("notice C"))
    outbox.enqueue(A, msg("final A", "final"))
    outbox.enqueue(B, msg("prompt B", "prompt"))
    await outbox.start()
    assert await outbox.wait_idle(timeout=5)
    assert order(fake)[1:] == [
        ("send", "B", "prompt B"),
        ("send", "A", "final A"),  # passes A's queued stream edit
        ("send", None, "started C"),
        ("send", "C", "status C"),  # C's notice keeps its place behind C's status
        ("send", "C", "notice C"),
        ("edit", "A", "A streaming"),
    ]


async def test_a_prompt_takes_its_threads_earlier_messages_along_ahead_of_the_chat(
    make_outbox: Any,
) -> None:
    """A thread's messages keep their order, but what a prompt must wait for in its own
    thread (here: its status message, not sent yet) goes with it, ahead of the other
    threads' notices; the status's stream edit it simply passes."""
    fake = FakePlatform(rate=40, burst=1)
    outbox: Outbox = make_outbox(fake)
    outbox.enqueue(B, text("notice B1"))
    status = outbox.enqueue(A, msg("⏳ Working…", "status"))[0]
    outbox.enqueue(B, text("notice B2"))
    outbox.enqueue_edit(A, status, msg("▸ Write a.txt", "status"), priority=1, stream_key="s")
    outbox.enqueue(A, msg("Allow Write?", "prompt"))
    await outbox.start()
    assert await outbox.wait_idle(timeout=5)
    assert order(fake) == [
        ("send", "A", "⏳ Working…"),
        ("send", "A", "Allow Write?"),
        ("send", "B", "notice B1"),
        ("send", "B", "notice B2"),
        ("edit", "A", "▸ Write a.txt"),
    ]


async def test_the_answer_passes_the_status_delete_but_not_the_done_edit(
    make_outbox: Any,
) -> None:
    """A turn's end: the "done" edit travels with the answer and before it (Slack
    ends its native stream on it); a status delete is decoration and goes after."""
    fake = FakePlatform(rate=40, burst=1)
    outbox: Outbox = make_outbox(fake)
    s1 = outbox.enqueue(A, msg("status 1", "status"))[0]
    s2 = outbox.enqueue(B, msg("status 2", "status"))[0]
    await outbox.start()
    await outbox.wait_sent(s2, timeout=5)
    await outbox.stop(grace=1)
    outbox.enqueue_edit(A, s1, msg("✅ Done", "done"))
    outbox.enqueue(A, msg("answer 1", "final"))
    outbox.enqueue_delete(B, s2)
    outbox.enqueue(B, msg("answer 2", "final"))
    await outbox.start()
    assert await outbox.wait_idle(timeout=5)
    assert order(fake)[2:] == [
        ("edit", "A", "✅ Done"),
        ("send", "A", "answer 1"),
        ("send", "B", "answer 2"),
        ("delete", "B", ""),
    ]


ROLES: tuple[Role, ...] = ("prompt", "final", "notice", "status")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from([A, B, C]),
            st.sampled_from(ROLES),
            st.integers(0, 3),  # stream edits of that message queued after it
        ),
        min_size=1,
        max_size=12,
    )
)
async def test_any_mix_keeps_each_threads_messages_and_edits_in_order(
    db: Database, steps: list[tuple[ThreadRef, Role, int]]
) -> None:
    """Whatever is queued: every message is sent once, a message's edits come after
    it and in order (its last edit is what it shows), a thread's messages keep their
    order, and the first row out is of the most urgent class queued (itself, or a
    message that one waited for in its thread, lifted to its class)."""
    with db.session() as s:  # one database for all examples: start each one empty
        s.exec(OUTBOX.delete())  # type: ignore[call-overload]
        s.commit()
    fake = FakePlatform(rate=2000, burst=1)
    outbox = Outbox(db, {P: fake}, retry_initial=0.01, retry_max=0.05)
    queued: list[tuple[ThreadRef, Role, str]] = []
    last_edit: dict[str, str] = {}
    for i, (thread, role, edits) in enumerate(steps):
        body = f"{thread.thread_id}{i}{role}"
        row = outbox.enqueue(thread, msg(body, role))[0]
        queued.append((thread, role, body))
        for j in range(edits):
            edit = f"{body}.e{j}"
            outbox.enqueue_edit(thread, row, text(edit), priority=1, stream_key=f"k{i}")
            last_edit[body] = edit
    await outbox.start()
    try:
        assert await outbox.wait_idle(timeout=10)
    finally:
        await outbox.stop(grace=1)
    sends = [c for c in fake.calls if c.op == "send"]
    assert sorted(c.text for c in sends) == sorted(body for _, _, body in queued)
    by_text = {c.text: c for c in sends}
    for body, edit in last_edit.items():
        assert fake.messages[("chat1", by_text[body].message_id)] == edit
        edits = [
            c for c in fake.calls if c.op == "edit" and c.message_id == by_text[body].message_id
        ]
        assert [c.text for c in edits] == sorted(c.text for c in edits)
        assert fake.calls.index(by_text[body]) < fake.calls.index(edits[0])
    for thread in (A, B, C):
        kept = [b for t, _, b in queued if t == thread]
        assert [c.text for c in sends if c.text in kept] == kept
    with db.engine.connect() as c:
        first = c.execute(
            select(T.priority).where(T.op == "send").order_by(T.sent_at, T.id).limit(1)
        ).scalar()
    assert first == min(class_of(msg("", r)) for _, r, _ in queued)


def test_migration_11_keeps_the_order_of_undelivered_rows(db: Database) -> None:
    """Rows written before delivery classes: 0 ("deliver") becomes a notice, 1 ("a
    stream update") a stream update; settled rows are left alone."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    common = {
        "chat_key": "fake:chat1",
        "thread_key": A.key,
        "platform": P,
        "chat_id": "chat1",
        "op": "send",
        "payload": "{}",
        "not_before": now,
        "created_at": now,
    }
    with db.engine.begin() as c:
        for priority, state in ((0, "pending"), (1, "pending"), (0, "sent")):
            c.execute(insert(OUTBOX), {**common, "priority": priority, "state": state})
    db_module._migration_11(db.engine)
    with db.engine.connect() as c:
        got = c.execute(select(T.priority, T.state).order_by(T.id)).all()
    assert [tuple(r) for r in got] == [(2, "pending"), (3, "pending"), (0, "sent")]


async def test_many_threads_one_prompt_waits_for_one_call(make_outbox: Any) -> None:
    """Twelve sessions' notices and status messages ahead in a chat paced at 20/s: the
    prompt queued last (its thread's notice is out, its status message not) goes out
    right after that status message, not as the 23rd call."""
    fake = FakePlatform(rate=20, burst=1)
    outbox: Outbox = make_outbox(fake)
    threads = [ThreadRef(P, "chat1", f"T{i}") for i in range(12)]
    for t in threads:
        outbox.enqueue(t, text(f"started {t.thread_id}"))
        outbox.enqueue(t, msg(f"status {t.thread_id}", "status"))
    await outbox.start()
    await outbox.wait_sent(1, timeout=5)  # "started T0"
    prompt = outbox.enqueue(threads[0], msg("Allow?", "prompt"))[0]
    sent_before = len(fake.calls)
    await outbox.wait_sent(prompt, timeout=5)
    texts = [c.text for c in fake.calls]
    assert texts.index("status T0") < texts.index("Allow?") <= sent_before + 2
    assert await outbox.wait_idle(timeout=10)


async def test_a_thread_being_opened_waits_for_a_final_answer_ready_to_go(
    make_outbox: Any,
) -> None:
    """Calls made outside the outbox (a topic and its header) book the chat's budget
    only when no prompt or final answer is ready: the answer goes first; a notice
    does not hold them back."""
    fake = FakePlatform(rate=10, burst=1)
    outbox: Outbox = make_outbox(fake)
    outbox.enqueue(B, text("started"))
    await outbox.reserve(P, "chat1")  # not started: only the notice is queued
    assert fake.calls == [] and outbox.db.outbox.count(state="pending") == 1
    await outbox.start()
    outbox.enqueue(A, msg("final A", "final"))
    slots = await outbox.reserve(P, "chat1", calls=2)
    opened_at = fake.clock()
    assert [c.text for c in fake.calls][:1] == ["final A"]
    assert fake.calls[0].at <= opened_at and len(slots) == 2
    assert await outbox.wait_idle(timeout=5)
