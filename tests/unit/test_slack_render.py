"""Outbound → Slack Block Kit and mrkdwn: formatting, escaping, buttons, splitting
within Slack's limits (checked with the fake's own Block Kit validator), and — with
hypothesis — that any Markdown renders into messages Slack would accept, every code
fence balanced and no word lost."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.messages import Button, Code, FileOut, Folded, Markdown, Outbound, Rendered, text
from adapters.slack import limits
from adapters.slack.markdown import markdown_to_mrkdwn
from adapters.slack.render import (
    fallback_text,
    merge_preview,
    render,
    render_edit,
    split_mrkdwn,
)
from tests.support.fakes.slack import check_blocks, mrkdwn_plain

FENCE = "```"


def sections(r: Rendered) -> list[str]:
    return [b["text"]["text"] for b in r.payload.get("blocks", []) if b["type"] == "section"]


def assert_valid(parts: list[Rendered]) -> None:
    for r in parts:
        if "file" in r.payload:
            continue
        errors, total = check_blocks(r.payload["blocks"])
        assert not errors, errors
        assert total <= limits.MAX_BLOCK_TEXT and len(r.payload["blocks"]) <= limits.MAX_BLOCKS
        assert 0 < len(r.payload["text"]) <= limits.MAX_FALLBACK_TEXT + 2
        for body in sections(r):
            assert len(body) <= limits.MAX_SECTION_TEXT
            assert sum(1 for line in body.split("\n") if line == FENCE) % 2 == 0, body


def test_markdown_becomes_mrkdwn() -> None:
    md = (
        "# Title\n\nSome **bold**, *italic*, ~~gone~~ and `code`.\n\n"
        "- one\n- two\n  - nested\n\n1. first\n2. second\n\n> quoted\n\n---\n\n"
        "[docs](https://example.com/a?b=1&c=2) and ![pic](https://example.com/p.png)"
    )
    out = markdown_to_mrkdwn(md)
    assert out.startswith("*Title*\n\nSome *bold*, _italic_, ~gone~ and `code`.")
    assert "• one\n• two\n    ◦ nested" in out and "1. first\n2. second" in out
    assert "> quoted" in out and "———" in out
    assert "<https://example.com/a?b=1&amp;c=2|docs>" in out
    assert "<https://example.com/p.png|🖼 pic>" in out


def test_special_characters_are_escaped_and_cannot_mention_or_link() -> None:
    out = markdown_to_mrkdwn("a < b && c > d <!channel> <@U123> [x](javascript:alert(1))")
    assert "&lt; b &amp;&amp; c &gt; d &lt;!channel&gt; &lt;@U123&gt;" in out
    assert "javascript" not in out and out.endswith("x")
    assert FENCE not in markdown_to_mrkdwn("three ``` backticks")
    url = markdown_to_mrkdwn("[l](https://e.com/a|b>c)")
    assert "|b" not in url.split("|l>")[0] and "%7C" in url


def test_code_blocks_are_fenced_escaped_and_cannot_be_closed_early() -> None:
    [r] = render(Outbound((Code("if a < b:\n    print('```')\n", "python"),)))
    [body] = sections(r)
    assert body.startswith("```\nif a &lt; b:") and body.endswith("\n```")
    assert body.count(FENCE) == 2


def test_folded_is_a_context_block_and_buttons_an_actions_block() -> None:
    msg = Outbound(
        (Markdown("Allow?"), Folded("Output: Bash: ls", "x" * 5000)),
        (
            (
                Button("✅ Allow", "p:r1:a", "primary"),
                Button("A" * 100, "p:r1:s"),
                Button("❌ Deny", "p:r1:d", "danger"),
                Button("too much data", "y" * 2001),
            ),
        ),
    )
    [r] = render(msg)
    kinds = [b["type"] for b in r.payload["blocks"]]
    assert kinds == ["section", "context", "actions"]
    context = r.payload["blocks"][1]["elements"][0]["text"]
    assert context.startswith("*Output: Bash: ls*\n…") and len(context) <= 3000
    buttons = r.payload["blocks"][2]["elements"]
    assert [b.get("style") for b in buttons] == ["primary", None, "danger"]
    assert [b["value"] for b in buttons] == ["p:r1:a", "p:r1:s", "p:r1:d"]
    assert len({b["action_id"] for b in buttons}) == 3
    assert len(buttons[1]["text"]["text"]) == 75
    assert_valid([r])


def test_mention_leads_the_first_message_only_when_asked() -> None:
    long = "\n\n".join("word " * 500 for _ in range(8))
    parts = render(Outbound((Markdown(long),), mention=True), mention="<@U1> <@U2>")
    assert sections(parts[0])[0].startswith("<@U1> <@U2> word")
    assert all("<@U1>" not in s for r in parts[1:] for s in sections(r))
    assert "<@U1>" not in sections(render(text("hi"), mention="<@U1>")[0])[0]


def test_a_long_answer_is_split_on_boundaries_with_buttons_on_the_last_message() -> None:
    paras = [f"Section {i}. " + "Lorem <ipsum> & dolor sit amet. " * 12 for i in range(40)]
    code = "```python\n" + "\n".join(f"print({i})  # a < b" for i in range(300)) + "\n```"
    answer = "\n\n".join(paras[:20] + [code] + paras[20:])
    msg = Outbound((Markdown(answer),), ((Button("Stop", "x:s1", "danger"),),))
    parts = render(msg)
    assert len(parts) >= 3
    assert_valid(parts)
    assert [any(b["type"] == "actions" for b in r.payload["blocks"]) for r in parts] == [False] * (
        len(parts) - 1
    ) + [True]
    plain = "\n".join(mrkdwn_plain("\n".join(sections(r))) for r in parts)
    assert all(f"Section {i}." in plain for i in range(40))
    assert plain.count("Lorem <ipsum> & dolor") == 40 * 12
    assert plain.count("# a < b") == 300


def test_many_blocks_are_spread_over_messages() -> None:
    parts = render(Outbound(tuple(Code(f"x = {i}") for i in range(120))))
    assert len(parts) == 3 and all(len(r.payload["blocks"]) <= 50 for r in parts)
    assert_valid(parts)


def test_split_keeps_escapes_links_and_inline_code_whole() -> None:
    line = " ".join(["&amp;&lt;&gt;"] * 400 + ["<https://example.com/x|a link>"] * 60)
    for chunk in split_mrkdwn(line, 500):
        assert len(chunk) <= 500
        assert not re.search(r"&(?:a|am|l|g|amp|lt|gt)$", chunk)
        assert chunk.count("<") == chunk.count(">")
    spans = split_mrkdwn("`" + "a b " * 600 + "`", 400)
    assert all(c.count("`") % 2 == 0 for c in spans)
    fenced = split_mrkdwn(FENCE + "\n" + "\n".join(f"line {i}" for i in range(900)) + "\n" + FENCE)
    assert len(fenced) >= 3 and all(c.startswith(FENCE) and c.endswith(FENCE) for c in fenced)


def test_render_edit_is_one_message_with_the_head_and_the_buttons() -> None:
    msg = Outbound((Markdown("word " * 10_000),), ((Button("Stop", "x:s1", "danger"),),))
    r = render_edit(msg)
    assert_valid([r])
    assert r.payload["blocks"][-1]["type"] == "actions"
    assert r.payload["blocks"][-2] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "…"}],
    }
    assert "markdown" not in r.payload
    preview = render_edit(Outbound((Markdown("**streamed** so far"),)))
    assert preview.payload["markdown"] == "**streamed** so far"


def test_files_become_uploads_after_the_text() -> None:
    parts = render(
        Outbound((Markdown("see the diff"),), file=FileOut("big.diff", b"+x\n", "a < b"))
    )
    assert sections(parts[0]) == ["see the diff"]
    f = parts[1].payload["file"]
    assert f["name"] == "big.diff" and f["comment"] == "a &lt; b" and f["data_b64"] == "K3gK"
    assert render(Outbound())[0].payload["blocks"][0]["text"]["text"] == "…"


def test_fallback_text_is_short_and_balanced() -> None:
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": FENCE + "\n" + "x\n" * 2000 + FENCE}}
    ]
    fallback = fallback_text(blocks)
    assert len(fallback) <= limits.MAX_FALLBACK_TEXT + 2
    assert sum(1 for line in fallback.split("\n") if line == FENCE) % 2 == 0


def test_merge_preview_puts_the_text_before_the_buttons() -> None:
    status = render_edit(
        Outbound(
            (Markdown("▸ Read a.py"), Markdown("⏳ _Working…_")), ((Button("⏹ Stop", "x:s"),),)
        )
    ).payload
    merged = merge_preview(
        status, render_edit(Outbound((Markdown("Hello " * 3000),))).payload["blocks"]
    )
    texts = [b["type"] for b in merged["blocks"]]
    assert texts[-1] == "actions" and "⏳" not in str(merged["blocks"])
    assert_valid([Rendered(merged)])


MARKDOWNISH = st.lists(
    st.sampled_from(
        list("ab cdXYZ019\n\n*_~`#>-+.&<>!\\ ") + ["```", "\n```\n", "é", "😀", "word "]
    ),
    max_size=1500,
).map("".join)
PARAGRAPHS = st.lists(MARKDOWNISH, max_size=12).map("\n\n".join)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(md=PARAGRAPHS, code=st.text(max_size=4000), mention=st.booleans())
def test_any_markdown_renders_within_slack_limits(md: str, code: str, mention: bool) -> None:
    msg = Outbound(
        (Markdown(md), Code(code, "diff"), Markdown(md * 3)),
        ((Button("✅ Allow", "p:x:a", "primary"), Button("❌ Deny", "p:x:d", "danger")),),
        mention=mention,
    )
    parts = render(msg, mention="<@U012ABCDEF>")
    assert_valid(parts)
    assert_valid([render_edit(msg)])
    shown = "".join(mrkdwn_plain("".join(sections(r))) for r in parts)
    # Every word shows, except a code fence's info string (Slack has no languages).
    for word in re.findall(r"[A-Za-z0-9]+", re.sub(r"(`{3,}|~{3,})[^\n]*", "", md)):
        assert word in shown


@settings(max_examples=60, deadline=None)
@given(body=st.text(max_size=20_000), limit=st.integers(min_value=40, max_value=3000))
def test_split_mrkdwn_respects_any_limit(body: str, limit: int) -> None:
    for chunk in split_mrkdwn(markdown_to_mrkdwn(body), limit):
        assert len(chunk) <= limit
        assert sum(1 for line in chunk.split("\n") if line == FENCE) % 2 == 0


def test_only_a_running_status_is_marked_and_the_mark_never_reaches_slack() -> None:
    """Slack's turn tracking reads the Outbound role through this mark, not button
    data; `check_blocks` accepts only Slack's own keys in the blocks."""
    from adapters.slack.render import TURN_RUNNING, render, render_edit

    stop = ((Button("⏹ Stop", "anything", "danger"),),)
    running = Outbound((Markdown("⏳ _Working…_"),), stop, role="status")
    assert render(running)[0].payload[TURN_RUNNING] is True
    assert render_edit(running).payload[TURN_RUNNING] is True
    for role in ("done", "final", "prompt", "stream", "notice"):
        msg = Outbound((Markdown("x"),), stop, role=role)
        assert TURN_RUNNING not in render(msg)[0].payload
        assert TURN_RUNNING not in render_edit(msg).payload


def test_thread_kind_and_root_keep_the_stored_form() -> None:
    from adapters.messages import ThreadRef

    chain = ThreadRef.reply_chain("telegram", "42", "7")
    assert (chain.kind, chain.root, chain.thread_id) == ("reply", "7", "reply:7")
    assert chain.key == "telegram:42:reply:7" and chain == ThreadRef("telegram", "42", "reply:7")
    topic = ThreadRef("telegram", "-1001", "55")
    assert (topic.kind, topic.root, topic.key) == ("thread", "55", "telegram:-1001:55")
    chat = ThreadRef("slack", "D1")
    assert (chat.kind, chat.root, chat.key) == ("chat", None, "slack:D1:")
