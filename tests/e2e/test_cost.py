"""`/cost`: dollars and tokens for the session, today and this month, equal to the sums
of the turns' own costs — the numbers each turn's footer showed — with the real
Claude Code CLI pricing the fake model's usage.  (The CLI's `total_cost_usd` is
cumulative per process; adding the raw values would count earlier turns again.)"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from storage.models import TurnRow
from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.harness import Harness, start_harness, stop_harness

pytestmark = pytest.mark.e2e

_LINE = re.compile(r"(This session|Today|This month): \$([0-9.]+) · ([0-9,]+) in / ([0-9,]+) out")


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path, agent_extra={"permission_mode": "acceptEdits"})
    yield harness
    await stop_harness(harness)


def _footer_cost(text: str) -> float:
    last = text.strip().splitlines()[-1]
    m = re.search(r"\$([0-9.]+)", last)
    assert m, f"no cost in footer {last!r}"
    return float(m.group(1))


def _turns(h: Harness) -> list[TurnRow]:
    with h.db.session() as s:
        return list(s.exec(select(TurnRow)))


async def test_cost_is_the_sum_of_the_turns(h: Harness) -> None:
    app = h.root / "app"
    (h.root / "other").mkdir()
    h.model.on("first question", Text("First answer, " + "quite long " * 40))
    h.model.on(
        "write the file",
        ToolUse("Write", {"file_path": str(app / "f.txt"), "content": "x" * 500}),
        Text("Written."),
    )
    h.model.on("third question", Text("Third answer."))
    h.model.on("other session", Text("Other answer."))
    topic, sid = await h.new_session(str(app), "first question")
    footers = [await h.wait_text("⏱", thread_id=topic)]
    for prompt in ("write the file", "third question"):
        h.say(prompt, thread_id=topic)
        n = len(footers) + 1
        await h.tg.wait_until(
            lambda n=n: (
                len([m for m in h.bot_messages(topic) if "⏱" in (m.visible_text or "")]) >= n
                or None
            ),
            timeout=30,
        )
        footers = [m for m in h.bot_messages(topic) if "⏱" in (m.visible_text or "")]
    other, other_sid = await h.new_session(str(h.root / "other"), "other session")
    other_footer = await h.wait_text("⏱", thread_id=other)

    # a turn of this session from long ago: in the session's total, not in today's or
    # this month's
    old = TurnRow(
        session_id=sid,
        prompt="old",
        started_at=datetime.now(UTC) - timedelta(days=40),
        cost_usd=1.25,
        input_tokens=1000,
        output_tokens=100,
        state="done",
    )
    with h.db.session() as s:
        s.add(old)
        s.commit()

    h.say("/cost", thread_id=topic)
    msg = await h.wait_text("This month", thread_id=topic)
    shown = {m.group(1): m.groups()[1:] for m in _LINE.finditer(msg.visible_text)}
    assert set(shown) == {"This session", "Today", "This month"}, msg.visible_text

    turns = [t for t in _turns(h) if t.prompt != "old"]
    mine = [t for t in turns if t.session_id == sid]
    assert len(mine) == 3 and all(t.cost_usd > 0 for t in turns)
    footer_costs = [_footer_cost(m.visible_text) for m in footers]
    # what the person saw per turn adds up to the session line (4-decimal rounding)
    session_cost = float(shown["This session"][0])
    assert abs(session_cost - (sum(footer_costs) + 1.25)) <= 0.0001 * (len(footer_costs) + 1)
    assert session_cost == round(sum(t.cost_usd for t in mine) + 1.25, 4)
    today = round(sum(t.cost_usd for t in turns), 4)
    assert float(shown["Today"][0]) == today == float(shown["This month"][0])
    assert abs(today - sum(footer_costs) - _footer_cost(other_footer.visible_text)) <= 0.0005
    # tokens: the sums of the turns' usage
    tin = sum(t.input_tokens for t in mine) + 1000
    tout = sum(t.output_tokens for t in mine) + 100
    assert shown["This session"][1:] == (f"{tin:,}", f"{tout:,}")
    assert shown["Today"][1] == f"{sum(t.input_tokens for t in turns):,}"
    # the session row's running total agrees
    row = h.db.sessions.get(sid)
    assert row is not None and round(row.cost_usd, 6) == round(sum(t.cost_usd for t in mine), 6)
    assert h.db.sessions.get(other_sid) is not None
