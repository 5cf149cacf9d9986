"""Looking for a send that may have arrived (`ChatAdapter.find_sent`), and only then.

A Telegram send whose answer was lost (a reset connection, a timeout) is looked for
by editing the next message ids to the same content before it is sent again.  Those
probes are platform calls: they must be paced by the chat's rate budget like any
other, and they must not be made when Telegram did answer (a 5xx: it did not arrive).
"""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select

from adapters.messages import ThreadRef
from bridge import render
from storage.models import AuditRow
from tests.support.harness import STRANGER, Harness, start_harness, stop_harness


def refused(h: Harness) -> int:
    with h.db.session() as s:
        rows = s.exec(select(AuditRow).where(AuditRow.action == "refused")).all()
    return len(rows)


async def test_a_5xx_answer_is_sent_again_without_looking_for_it(tmp_path: Path) -> None:
    h = await start_harness(tmp_path)
    try:
        thread = ThreadRef("telegram", str(h.chat_id), None)
        h.bridge.reply(thread, render.notice("first notice"))
        await h.wait_text("first notice")
        h.tg.fail_next("sendMessage", 502)
        mark = len(h.tg.api_log)
        h.bridge.reply(thread, render.notice("second notice"))
        await h.wait_text("second notice", timeout=30)
        calls = [c.method for c in h.tg.api_log[mark:] if c.method != "getUpdates"]
        assert calls == ["sendMessage", "sendMessage"], "refused, sent again, nothing probed"
        assert [m.visible_text for m in h.bot_messages()].count("second notice") == 1
    finally:
        await stop_harness(h)


async def test_probes_after_a_lost_answer_keep_to_the_group_budget(tmp_path: Path) -> None:
    h = await start_harness(tmp_path, group=True)
    try:
        thread = ThreadRef("telegram", str(h.chat_id), None)
        # A stranger is refused once (our newest message), then only audited: six
        # message ids after ours that are not ours to probe.
        h.say("hello", user=STRANGER)
        await h.wait_text("only works for its owners")
        for i in range(6):
            h.say(f"chatter {i}", user=STRANGER)
        await h.tg.wait_until(lambda: refused(h) >= 6, timeout=30)
        h.tg.fail_next("sendMessage", applied=True, reset=True)  # arrives, answer lost
        mark = len(h.tg.api_log)
        h.bridge.reply(thread, render.notice("lost answer"))
        assert await h.bridge.outbox.wait_idle(timeout=60)
        probes = [c for c in h.tg.api_log[mark:] if c.method == "editMessageText"]
        assert len(probes) >= 6, "the people's messages were tried before ours was found"
        # Paced like every call to the chat (1/s, burst 3).  The fake does not count
        # a refused edit against the limits (Telegram may), so the spacing is checked.
        assert probes[-1].at - probes[0].at >= 0.9 * (len(probes) - 3)
        assert h.tg.count_429 == 0
        shown = [m.visible_text for m in h.bot_messages()]
        assert shown.count("lost answer") == 1, "found, not sent twice"
    finally:
        await stop_harness(h)
