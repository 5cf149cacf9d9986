"""Outbound → Telegram HTML: conversion, escaping, splitting, payloads.

Every produced chunk is checked by a strict validator built on html.parser: only
Telegram's tags and attributes, properly nested, no stray `<`, `>` or `&`, only the
four named entities Telegram knows, no blockquote or pre inside a blockquote.
"""

from __future__ import annotations

import base64
import html as htmllib
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.messages import (
    Block,
    Button,
    Code,
    FileOut,
    Folded,
    Markdown,
    Outbound,
    Rendered,
    text,
)
from adapters.telegram.limits import MAX_CALLBACK_DATA, MAX_TEXT, utf16_len
from adapters.telegram.markdown import markdown_to_html
from adapters.telegram.render import render, render_edit, split_html, visible_text

_TAGS: dict[str, set[str]] = {
    "b": set(), "strong": set(), "i": set(), "em": set(), "u": set(), "ins": set(),
    "s": set(), "strike": set(), "del": set(), "code": {"class"}, "pre": set(),
    "a": {"href"}, "blockquote": {"expandable"}, "tg-spoiler": set(),
}  # fmt: skip


class TelegramHTML(HTMLParser):
    """Strict checker for Telegram's HTML subset; collects the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []
        self.visible: list[str] = []

    def fail(self, why: str) -> None:
        raise AssertionError(why)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _TAGS:
            self.fail(f"tag <{tag}> not supported by Telegram")
        for name, value in attrs:
            if name not in _TAGS[tag]:
                self.fail(f"attribute {name} not allowed on <{tag}>")
            if tag == "code" and not (value or "").startswith("language-"):
                self.fail("code class must be language-…")
            if tag == "code" and self.stack[-1:] != ["pre"]:
                self.fail("a language is only allowed on code inside pre")
        if tag == "a" and not dict(attrs).get("href"):
            self.fail("<a> without href")
        if tag == "blockquote" and "blockquote" in self.stack:
            self.fail("nested blockquote")
        if tag == "pre" and "blockquote" in self.stack:
            self.fail("pre inside blockquote")
        if self.stack and self.stack[-1] in ("pre", "code") and tag != "code":
            self.fail(f"<{tag}> inside <{self.stack[-1]}>")
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.fail(f"self-closing <{tag}/>")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.fail(f"</{tag}> does not close {self.stack[-1:]}")
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        for ch in "<>&":
            if ch in data:
                self.fail(f"unescaped {ch!r} in text: {data[:60]!r}")
        self.visible.append(data)

    def handle_entityref(self, name: str) -> None:
        if name not in ("lt", "gt", "amp", "quot"):
            self.fail(f"entity &{name}; unknown to Telegram")
        self.visible.append(htmllib.unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self.visible.append(htmllib.unescape(f"&#{name};"))

    def handle_comment(self, data: str) -> None:
        self.fail("comment")

    def handle_decl(self, decl: str) -> None:
        self.fail("declaration")

    def handle_pi(self, data: str) -> None:
        self.fail("processing instruction")

    def unknown_decl(self, data: str) -> None:
        self.fail("unknown declaration")


def check(markup: str) -> str:
    """Assert `markup` is well-formed Telegram HTML; return its visible text."""
    parser = TelegramHTML()
    parser.feed(markup)
    parser.close()
    assert parser.rawdata == "", f"unparsed trailing input {parser.rawdata[:40]!r}"
    assert not parser.stack, f"unclosed tags {parser.stack}"
    return "".join(parser.visible)


def texts(rendered: list[Rendered]) -> list[str]:
    return [r.payload["text"] for r in rendered if "text" in r.payload]


# --- Markdown → HTML --------------------------------------------------------------


def test_formatting_subset() -> None:
    out = markdown_to_html("# Title\n\n**bold** *it* ~~gone~~ `x<y` [link](https://e.org/?a=1&b=2)")
    assert out == (
        "<b>Title</b>\n\n<b>bold</b> <i>it</i> <s>gone</s> <code>x&lt;y</code> "
        '<a href="https://e.org/?a=1&amp;b=2">link</a>'
    )
    check(out)


def test_code_block_with_language() -> None:
    out = markdown_to_html('```python\nprint("<hi>")\n```')
    assert out == '<pre><code class="language-python">print("&lt;hi&gt;")</code></pre>'


def test_lists_tables_images_quotes() -> None:
    md = "- a\n- b\n  1. x\n  2. y\n\n3. three\n4. four\n\n| k | v |\n|---|--:|\n| a | 10 |\n\n![pic](https://e.org/p.png)\n\n> q\n> > nested\n> ```\n> code\n> ```"
    out = markdown_to_html(md)
    check(out)
    assert "• a\n• b\n   ◦" not in out  # ordered sublist keeps numbers
    assert "   1. x\n   2. y" in out
    assert "3. three\n4. four" in out
    assert "<pre>k │  v\n──┼───\na │ 10</pre>" in out
    assert '<a href="https://e.org/p.png">🖼 pic</a>' in out
    assert out.count("<blockquote>") == 1 and "<pre>" not in out.split("<blockquote>")[1]


@pytest.mark.parametrize(
    "source, visible",
    [
        ("<script>alert(1)</script>", "<script>alert(1)</script>"),
        ("a < b && c > d", "a < b && c > d"),
        (
            "<b>not bold</b> <img src=x onerror=alert(1)>",
            "<b>not bold</b> <img src=x onerror=alert(1)>",
        ),
        ("x &amp; y &lt; z", "x & y < z"),
    ],
)
def test_raw_html_is_escaped(source: str, visible: str) -> None:
    out = markdown_to_html(source)
    assert "<script" not in out and "<img" not in out and "<b>not" not in out
    assert check(out) == visible


def test_unsafe_and_relative_links_become_text() -> None:
    out = markdown_to_html(
        '[x](javascript:alert(1)) [app.py](src/app.py) [q](https://e.org/"onclick=")'
    )
    assert "javascript" not in out and 'href="src' not in out
    assert "&quot;onclick=&quot;" in out or "%22onclick=%22" in out
    check(out)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_any_markdown_gives_valid_html(source: str) -> None:
    check(markdown_to_html(source))


# --- split_html --------------------------------------------------------------------

_tag = st.sampled_from(
    ["<b>", "<i>", "<s>", "<u>", '<a href="https://e.org/?a=1&amp;b=&quot;">', "<tg-spoiler>"]
)


@st.composite
def telegram_html(draw: st.DrawFn) -> str:
    """Well-formed Telegram HTML from arbitrary text: random inline nesting, code, pre, quotes."""

    def inline(depth: int) -> str:
        parts: list[str] = []
        for _ in range(draw(st.integers(0, 4))):
            kind = draw(st.sampled_from(["text", "text", "tag", "code"] if depth < 3 else ["text"]))
            if kind == "text":
                parts.append(htmllib.escape(draw(st.text()), quote=False))
            elif kind == "code":
                parts.append(f"<code>{htmllib.escape(draw(st.text()), quote=False)}</code>")
            else:
                open_tag = draw(_tag)
                name = open_tag[1:].split(">")[0].split()[0]
                parts.append(f"{open_tag}{inline(depth + 1)}</{name}>")
        return "".join(parts)

    blocks: list[str] = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["para", "pre", "quote", "expandable"]))
        if kind == "para":
            blocks.append(inline(0))
        elif kind == "pre":
            body = htmllib.escape(draw(st.text()), quote=False)
            blocks.append(f'<pre><code class="language-python">{body}</code></pre>')
        else:
            attr = " expandable" if kind == "expandable" else ""
            blocks.append(f"<blockquote{attr}>{inline(0)}</blockquote>")
    return draw(st.sampled_from(["\n\n", "\n", " ", ""])).join(blocks)


def assert_split_ok(markup: str, limit: int) -> list[str]:
    whole = check(markup)
    chunks = split_html(markup, limit)
    seen = [check(c) for c in chunks]
    assert all(utf16_len(v) <= limit for v in seen), [utf16_len(v) for v in seen]
    assert "".join(seen) == whole
    assert all(v for v in seen) or len(chunks) == 1
    return chunks


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(telegram_html(), st.integers(16, 120))
def test_split_html_property(markup: str, limit: int) -> None:
    assert_split_ok(markup, limit)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(), st.integers(16, 200))
def test_split_rendered_markdown_property(source: str, limit: int) -> None:
    assert_split_ok(markdown_to_html(source), limit)


def test_split_prefers_paragraphs_then_lines() -> None:
    para = "word " * 30
    chunks = split_html(f"{para}\n\n{para}\n\n{para}", 400)
    assert [visible_text(c) for c in chunks] == [f"{para}\n\n{para}\n\n", para]
    lines = "\n".join(f"line {i}" for i in range(100))
    for chunk in split_html(lines, 100)[:-1]:
        assert visible_text(chunk).endswith("\n")


def test_split_counts_utf16_units() -> None:
    emoji = "😀" * 3000  # 6000 UTF-16 units
    chunks = assert_split_ok(emoji, MAX_TEXT)
    assert [len(visible_text(c)) for c in chunks] == [2048, 952]


def test_split_never_inside_entity_or_tag() -> None:
    markup = '<a href="https://e.org/?x=&amp;y">' + "&lt;&amp;&gt;" * 50 + "</a>"
    for chunk in assert_split_ok(markup, 16):
        assert chunk.startswith('<a href="https://e.org/?x=&amp;y">') and chunk.endswith("</a>")


# --- Outbound → payloads -----------------------------------------------------------


def long_answer() -> str:
    paras: list[str] = []
    i = 0
    while sum(len(p) for p in paras) < 10_000:
        i += 1
        paras.append(
            f"Paragraph {i}: **bold** text with `code` & <angles>, " + "lorem ipsum dolor " * 12
        )
        if i % 5 == 0:
            paras.append(
                "```python\n" + "\n".join(f"x_{j} = {j} < {j + 1}" for j in range(40)) + "\n```"
            )
    return "\n\n".join(paras)


def test_ten_thousand_character_answer() -> None:
    answer = long_answer()
    assert len(answer) >= 10_000
    rendered = render(text(answer, notify=True))
    chunks = texts(rendered)
    assert len(chunks) >= 3
    for chunk in chunks:
        assert utf16_len(check(chunk)) <= MAX_TEXT
    assert "".join(check(c) for c in chunks).replace("\n", "") == check(
        markdown_to_html(answer)
    ).replace("\n", "")
    flags = [r.payload["disable_notification"] for r in rendered]
    assert flags == [False] + [True] * (len(rendered) - 1)  # one notification for the answer
    assert all(
        r.payload["parse_mode"] == "HTML" and r.payload["link_preview"] is False for r in rendered
    )


def test_code_fence_split_across_chunks_is_reopened() -> None:
    code = "\n".join(f"print({i})  # a line of code that is fairly long" for i in range(200))
    rendered = render(Outbound((Markdown("Here:\n\n```python\n" + code + "\n```\nDone."),)))
    chunks = texts(rendered)
    assert len(chunks) >= 3
    for chunk in chunks:
        check(chunk)
    with_code = [c for c in chunks if "print(" in c]
    assert len(with_code) >= 2
    for chunk in with_code:
        start = chunk.index('<pre><code class="language-python">')
        assert chunk.index("print(") > start
        assert "</code></pre>" in chunk[chunk.rindex("print(") :]


def test_buttons_on_last_chunk_only() -> None:
    buttons = ((Button("✅ Allow", "p:r1:a", "primary"), Button("❌ Deny", "p:r1:d", "danger")),)
    rendered = render(Outbound((Markdown("x " * 5000),), buttons, notify=True))
    assert len(rendered) == 3
    assert all("reply_markup" not in r.payload for r in rendered[:-1])
    assert rendered[-1].payload["reply_markup"] == {
        "inline_keyboard": [
            [
                {"text": "✅ Allow", "callback_data": "p:r1:a", "style": "primary"},
                {"text": "❌ Deny", "callback_data": "p:r1:d", "style": "danger"},
            ]
        ]
    }


def test_button_data_over_64_bytes_is_dropped() -> None:
    ok, bad = Button("ok", "x" * MAX_CALLBACK_DATA), Button("bad", "é" * 33)
    rendered = render(Outbound((Markdown("hi"),), ((ok, bad),)))
    assert rendered[0].payload["reply_markup"]["inline_keyboard"] == [
        [{"text": "ok", "callback_data": "x" * 64}]
    ]


def test_code_and_folded_blocks() -> None:
    msg = Outbound((Code("-a\n+b <x>", "diff"), Folded("Bash output", "line 1\n<tag> & more")))
    [r] = render(msg)
    assert r.payload["text"] == (
        '<pre><code class="language-diff">-a\n+b &lt;x&gt;</code></pre>\n\n'
        "<blockquote expandable><b>Bash output</b>\nline 1\n&lt;tag&gt; &amp; more</blockquote>"
    )
    check(r.payload["text"])
    assert r.payload["disable_notification"] is True


def test_file_after_text() -> None:
    msg = Outbound(
        (Markdown("diff below"),), notify=True, file=FileOut("app.py.diff", b"+x\n", "full <diff>")
    )
    first, doc = render(msg)
    assert first.payload["text"] == "diff below"
    assert doc.payload["document"] == {
        "name": "app.py.diff",
        "data_b64": base64.b64encode(b"+x\n").decode(),
        "caption": "full &lt;diff&gt;",
    }
    assert doc.payload["disable_notification"] is True  # the text already notified


def test_file_only_carries_buttons_and_long_caption_is_cut() -> None:
    msg = Outbound(buttons=((Button("b", "d"),),), file=FileOut("f.txt", b"", "c" * 2000))
    [doc] = render(msg)
    assert "reply_markup" in doc.payload
    assert utf16_len(check(doc.payload["document"]["caption"])) <= 1024


def test_empty_message_is_never_empty_text() -> None:
    [r] = render(Outbound())
    assert r.payload["text"].strip()


@pytest.mark.parametrize("keep", ["head", "tail"])
def test_render_edit_truncates_to_one_valid_message(keep: str) -> None:
    msg = Outbound(
        (Markdown("start\n\n```\n" + "code line\n" * 1000 + "```\n\nend"),),
        ((Button("⏹ Stop", "x:s1"),),),
    )
    r = render_edit(msg, keep)  # type: ignore[arg-type]
    shown = check(r.payload["text"])
    assert utf16_len(shown) <= MAX_TEXT
    assert r.payload["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "x:s1"
    assert ("start" in shown) == (keep == "head") and ("end" in shown) == (keep == "tail")
    assert "<pre>" in r.payload["text"]


def test_render_edit_short_message_unchanged() -> None:
    assert render_edit(text("**hi**")).payload["text"] == "<b>hi</b>"


_blocks = st.lists(
    st.one_of(
        st.builds(Markdown, st.text()),
        st.builds(
            Code, st.text(), st.sampled_from(["", "diff", "python", "c++", "bad lang!", '"><x'])
        ),
        st.builds(Folded, st.text(), st.text()),
    ),
    max_size=6,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(_blocks, st.booleans())
def test_any_outbound_renders_valid_messages(blocks: list[Block], notify: bool) -> None:
    rendered = render(Outbound(tuple(blocks), notify=notify))
    assert rendered
    for chunk in texts(rendered):
        assert utf16_len(check(chunk)) <= MAX_TEXT
    check(render_edit(Outbound(tuple(blocks))).payload["text"])


def test_permission_prompt_end_to_end(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bridge.render import permission_prompt

    (tmp_path / "app.py").write_text("".join(f"x{i} = '<{i}>' & 1\n" for i in range(3000)))
    edit = {
        "file_path": str(tmp_path / "app.py"),
        "old_string": "x10 = '<10>' & 1\n",
        "new_string": "".join(f"y{i} = {i}\n" for i in range(500)),
    }
    rendered = render(
        permission_prompt("abc123", "Edit", edit, str(tmp_path), session_rule="stores a rule")
    )
    *messages, document = rendered
    for chunk in texts(messages):
        shown = check(chunk)
        assert utf16_len(shown) <= MAX_TEXT
    assert "@@ -8,7 +8,506 @@" in check(
        messages[0].payload["text"]
    ) and "x10 = '<10>' & 1" in check(messages[0].payload["text"])
    assert (
        messages[-1].payload["reply_markup"]["inline_keyboard"][0][2]["callback_data"]
        == "p:abc123:d"
    )
    assert messages[0].payload["disable_notification"] is False
    assert document.payload["document"]["name"] == "app.py.diff"
    assert base64.b64decode(document.payload["document"]["data_b64"]).decode().count("\n+y") == 500
