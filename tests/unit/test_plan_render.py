"""Claude's plan (bridge/approvals/plans.py) as each platform shows it: the plan as
Markdown, a long plan cut within one message with the whole attached as plan.md, the
three buttons within Telegram's 64 bytes and Slack's block limits, Matrix reactions
with a hint saying what to type; the decided form; the typed words; the feedback
Claude reads."""

from __future__ import annotations

from adapters.matrix.render import render as matrix_render
from adapters.slack import limits
from adapters.slack.render import render as slack_render
from adapters.telegram.limits import MAX_TEXT
from adapters.telegram.render import render as telegram_render
from adapters.telegram.render import render_edit as telegram_edit
from adapters.telegram.render import visible_text
from bridge.approvals import plans
from tests.support.fakes.slack import check_blocks

RID = "aMIxHK75Ej3SdE5a"  # the broker's ids: token_urlsafe(12), 16 characters
PLAN = "# Plan\n\n1. Edit `app.py` <b>&\n2. Run **tests**\n"
LONG = "# Plan: big\n\n" + "".join(f"{i}. step {i} of the work\n" for i in range(600))


def test_the_cli_input_parses_into_the_plan_text_and_file() -> None:
    plan = plans.parse({"plan": PLAN, "planFilePath": "/h/.claude/plans/x.md"})
    assert (plan.text, plan.path) == (PLAN, "/h/.claude/plans/x.md")
    empty = plans.parse({})  # no plan file: the CLI sends {}
    assert empty.text == "" and not empty.awaiting_feedback
    msg = plans.plan_message(RID, empty)
    assert "no plan text" in msg.plain and msg.file is None


def test_the_plan_with_three_buttons_on_telegram() -> None:
    msg = plans.plan_message(RID, plans.parse({"plan": PLAN}))
    assert [b.label for row in msg.buttons for b in row] == [
        "✅ Approve",
        "⏩ Approve & auto-accept edits",
        "✏️ Keep planning",
    ]
    assert [b.data for row in msg.buttons for b in row] == [f"l:{RID}:{a}" for a in "aek"]
    assert all(len(b.data.encode()) <= 64 for row in msg.buttons for b in row)
    assert msg.role == "prompt" and msg.notify and msg.file is None
    [out] = telegram_render(msg)
    shown = visible_text(out.payload["text"])
    assert "Claude's plan" in shown and "Edit app.py <b>&" in shown, "Markdown, shown as such"
    assert "Run tests" in shown


def test_a_long_plan_shows_its_start_and_is_attached_whole() -> None:
    msg = plans.plan_message(RID, plans.parse({"plan": LONG}))
    assert msg.file is not None and msg.file.name == "plan.md"
    assert msg.file.data.decode() == LONG
    assert "step 599" not in msg.plain and "step 0 of" in msg.plain
    assert "plan.md" in msg.plain
    texts = [r for r in telegram_render(msg) if "text" in r.payload]
    assert len(texts) == 1, "the plan and its buttons are one message"
    assert len(visible_text(texts[0].payload["text"])) <= MAX_TEXT
    for r in slack_render(msg):
        if "blocks" in r.payload:
            errors, total = check_blocks(r.payload["blocks"])
            assert not errors, errors
            assert total <= limits.MAX_BLOCK_TEXT
    decided = plans.decided_message(plans.parse({"plan": LONG}), plans.decided_line("a", "Ada"))
    assert decided.file is None and not decided.buttons
    assert len(visible_text(telegram_edit(decided).payload["text"])) <= MAX_TEXT


def test_a_cut_inside_a_code_block_closes_it() -> None:
    fenced = "# Plan\n\n```python\n" + "x = 1\n" * 1000 + "```\n"
    msg = plans.plan_message(RID, plans.parse({"plan": fenced}))
    body = "\n".join(b.text for b in msg.blocks if hasattr(b, "text"))
    assert body.count("```") % 2 == 0


def test_matrix_reactions_and_the_typed_answers() -> None:
    [out] = matrix_render(plans.plan_message(RID, plans.parse({"plan": PLAN})))
    assert [k for k, _ in out.payload["buttons"]] == ["✅", "⏩", "✏️"]
    body = out.payload["content"]["body"]
    assert "or reply approve, auto, or with your feedback" in body
    assert plans.word("Approve") == "a" and plans.word("approve!") == "a"
    assert plans.word("auto") == "e" and plans.word("Approve & auto") == "e"
    assert plans.word("keep planning") == "k" and plans.word("Keep") == "k"
    assert plans.word("approve it but add tests") is None, "a sentence is feedback"


def test_waiting_for_feedback_and_the_decided_lines() -> None:
    plan = plans.parse({"plan": PLAN})
    plan.awaiting_feedback = True
    assert "Write your feedback" in plans.plan_message(RID, plan).plain
    assert "default" in plans.decided_line("a", "Ada") and "Ada" in plans.decided_line("a", "Ada")
    assert "acceptEdits" in plans.decided_line("e", "Ada")
    sent = plans.decided_line("k", "Ada", "add *tests*\nplease")
    assert "Sent back by Ada" in sent and "add \\*tests\\* please" in sent
    assert plans.MODE_AFTER == {"a": "default", "e": "acceptEdits"}


def test_the_feedback_claude_reads() -> None:
    text = plans.feedback_message("  Split step 3  ")
    assert text.endswith("Split step 3") and "plan mode" in text and "ExitPlanMode" in text
    assert len(plans.feedback_message("x" * 10_000)) < 5000
