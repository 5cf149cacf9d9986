"""The README's session samples, from real runs: `python -m tests.support.samples`.

Each platform's harness runs the whole daemon with the real Claude Code CLI against the
fake model, and the real client library against the local fake platform (Telegram,
Slack) or a real Synapse (Matrix, when `scripts/install-synapse` has run).  The same short story plays on each:
`new` with a prompt, Claude reads a file and edits it, the person allows the edit, the
answer arrives with its footer.  What is printed is what the person's app shows at the
end — every message in order, with its final text (edits applied) and its buttons —
with the run's temporary directory shown as `~/code`.  Nothing is written by hand.
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tests.support.fakes.anthropic import FakeAnthropic, Text, ToolUse

PROMPT = "fix the failing test"
ANSWER = "The test failed because `add()` subtracted. Fixed: it adds now."
WIDTH = 11  # "Threadline " — the column the text starts in


def _project(root: Path) -> tuple[Path, Path]:
    app = root / "app"
    (app / "tests").mkdir(parents=True, exist_ok=True)
    source = app / "calc.py"
    source.write_text("def add(a, b):\n    return a - b\n")
    (app / "tests" / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n"
    )
    return app, source


def _script(model: FakeAnthropic, source: Path) -> None:
    model.on(
        PROMPT,
        ToolUse("Read", {"file_path": str(source)}),
        ToolUse(
            "Edit",
            {"file_path": str(source), "old_string": "return a - b", "new_string": "return a + b"},
        ),
        Text(ANSWER),
    )


def _lines(who: str, text: str, buttons: Iterable[str] = ()) -> list[str]:
    body = text.strip().splitlines() or [""]
    labels = " ".join(f"[ {b} ]" for b in buttons)
    if labels:
        body.append(labels)
    out = [f"{who:<{WIDTH - 1}} {body[0]}".rstrip()]
    out += [(" " * WIDTH + line).rstrip() for line in body[1:]]
    return out


def _shown(text: str, root: Path) -> str:
    return text.replace(str(root), "~/code")


async def telegram(tmp: Path) -> list[str]:
    from tests.support.harness import start_harness, stop_harness

    h = await start_harness(tmp)
    try:
        app, source = _project(h.root)
        _script(h.model, source)
        h.say(f"/new {app} {PROMPT}")
        prompt = await h.wait_msg(lambda m: "Allow" in " ".join(m.button_labels), timeout=60)
        pressed_after = max(m.message_id for m in h.tg.messages(h.chat_id, include_user=True))
        h.press(prompt, "Allow")
        await h.wait_text("⏱", timeout=60)
        await asyncio.sleep(1.5)  # let the last edits land: the sample shows the end state
        out: list[str] = []
        topics = {t: topic.name for t, topic in h.tg.topics(h.chat_id).items()}
        shown_topics: set[int] = set()
        everything = h.tg.messages(h.chat_id, include_user=True)
        for m in sorted(everything, key=lambda m: m.message_id):
            if m.thread_id in topics and m.thread_id not in shown_topics:
                shown_topics.add(m.thread_id)
                out.append(" " * WIDTH + f"── new topic “{topics[m.thread_id]}” ──")
            if m.kind == "forum_topic_created" or m.deleted:
                continue
            who = "Threadline" if m.from_bot else "You"
            out += _lines(who, _shown(m.visible_text or "", h.root), m.button_labels)
            if m.message_id == pressed_after:
                out.append("You        (taps Allow)")
        if h.tg.drafts(chat_id=h.chat_id):
            out.append(" " * WIDTH + "(the answer streamed as a live draft while Claude wrote it)")
        return out
    finally:
        await stop_harness(h)


async def slack(tmp: Path) -> list[str]:
    from tests.support.slack_harness import start_slack_harness, stop_slack_harness

    h = await start_slack_harness(tmp)
    try:
        app, source = _project(h.root)
        _script(h.model, source)
        h.say(f"!new {app} {PROMPT}")

        def first(needle: str) -> object:
            return next(
                (
                    m
                    for m in h.slack.transcript
                    if m.is_bot and needle in m.visible_text + " ".join(m.button_labels)
                ),
                None,
            )

        prompt = await h.slack.wait_until(lambda: first("Allow for session"), 60)
        h.press(prompt, "Allow")
        await h.slack.wait_until(lambda: first("⏱"), 60)
        await asyncio.sleep(1.5)
        out: list[str] = []
        everything = [m for m in h.slack.transcript if m.channel == h.channel]
        for m in sorted(everything, key=lambda m: float(m.ts)):
            if m.deleted:
                continue
            who = "Threadline" if m.is_bot else "You"
            indent = "  └ " if m.thread_ts and m.thread_ts != m.ts else ""
            text = _shown(m.visible_text, h.root)
            out += [
                indent + line if indent else line for line in _lines(who, text, m.button_labels)
            ]
            if m is prompt:
                out.append("You        (clicks Allow)")
        return out
    finally:
        await stop_slack_harness(h)


async def matrix(tmp: Path) -> list[str]:
    from tests.support.matrix_harness import start_matrix_harness, stop_matrix_harness
    from tests.support.synapse import Synapse, synapse_python

    if synapse_python() is None:
        return ["(Synapse is not installed: run scripts/install-synapse)"]
    synapse = Synapse(tmp / "synapse").start()
    try:
        h = await start_matrix_harness(tmp / "run", synapse)
        try:
            app, source = _project(h.root)
            _script(h.model, source)
            await h.say(f"!new {app} {PROMPT}")
            prompt = await h.phone.wait(
                lambda: next((m for m in h.bot_messages() if "React ✅" in m.body), None), 60
            )
            await h.react(prompt, "✅")
            await h.phone.wait(
                lambda: next((m for m in h.bot_messages() if "⏱" in m.body), None), 60
            )
            await asyncio.sleep(2.0)
            out: list[str] = []
            for m in h.phone.in_room(h.room):
                if not m.body:
                    continue
                mine = m.sender == h.bot.user_id
                indent = "  └ " if m.thread else ""
                keys = m.reaction_keys(h.bot.user_id) if mine else []
                # The plain `body` keeps Markdown's escapes; Element shows them resolved.
                body = re.sub(r"\\([\\`*_{}\[\]()#+\-.!|~>])", r"\1", m.body)
                lines = _lines("Threadline" if mine else "You", _shown(body, h.root))
                if keys:
                    lines.append(" " * WIDTH + "(the bot's reactions: " + " ".join(keys) + ")")
                out += [indent + line if indent else line for line in lines]
                if m is prompt:
                    out.append("  └ You        ✅ (reacts)")
            return out
        finally:
            await stop_matrix_harness(h)
    finally:
        synapse.stop()


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="threadline-samples-") as tmp:
        for name, run in (("Telegram", telegram), ("Slack", slack), ("Matrix", matrix)):
            where = Path(tmp) / name.lower()
            where.mkdir()
            print(f"{name}:\n\n~~~")
            print("\n".join(await run(where)))
            print("~~~\n")
            sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
