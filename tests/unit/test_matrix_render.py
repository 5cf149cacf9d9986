"""Unit tests for the Matrix adapter's pure parts: Markdown → Matrix HTML, Outbound →
event contents (formats, splitting under the size budget, buttons as reactions,
mentions), inbound parsing of event dicts, the button map, the pacer against
Synapse's own rate-limiting algorithm, and error translation."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nio import ErrorResponse

from adapters.base import PermanentError, RateLimited, TransientError
from adapters.matrix import buttons, inbound
from adapters.matrix.e2ee.store import Credentials, MatrixStore
from adapters.matrix.errors import MatrixErrors
from adapters.matrix.limits import MAX_CONTENT_BYTES, MAX_EDIT_CONTENT_BYTES, RateLimit
from adapters.matrix.markdown import html_to_text, markdown_to_html
from adapters.matrix.pacing import Pacer
from adapters.matrix.render import json_size, render, render_edit
from adapters.messages import Button, Code, FileOut, Folded, Markdown, Outbound
from bridge import render as br

OWNER = "@ada:example.org"


def content(msg: Outbound, i: int = 0) -> dict[str, Any]:
    return render(msg, [OWNER])[i].payload["content"]


# --- Markdown → HTML --------------------------------------------------------------


def test_markdown_becomes_matrix_html_and_raw_html_is_escaped() -> None:
    html = markdown_to_html(
        "Hi **there** <script>alert(1)</script> & `x<y`\n"
        "second line\n\n![cat](https://x.org/cat.png) [bad](javascript:alert(1)) ~~old~~"
    )
    assert "<strong>there</strong>" in html and "&lt;script&gt;" in html
    assert "<code>x&lt;y</code>" in html and "<br />" in html, "single newlines stay lines"
    assert '<a href="https://x.org/cat.png">cat</a>' in html and "<img" not in html
    assert "javascript" not in html and "<del>old</del>" in html


def test_code_blocks_carry_their_language_class() -> None:
    html = markdown_to_html("```python\nprint(1 < 2)\n```\n\n```{!}\nx\n```")
    assert '<pre><code class="language-python">print(1 &lt; 2)\n</code></pre>' in html
    assert "<pre><code>x\n</code></pre>" in html


# --- contents ---------------------------------------------------------------------


def test_a_permission_prompt_has_html_a_hint_reaction_keys_and_a_mention() -> None:
    prompt = br.permission_prompt(
        "req1", "Bash", {"command": "rm -rf build"}, "/w", session_rule="stores a rule"
    )
    [out] = render(prompt, [OWNER])
    c = out.payload["content"]
    assert c["msgtype"] == "m.text", "a prompt notifies"
    assert c["format"] == "org.matrix.custom.html"
    assert '<code class="language-bash">rm -rf build' in c["formatted_body"]
    assert "```bash\nrm -rf build\n```" in c["body"]
    assert "React ✅ Allow · ♾️ Allow for session · ❌ Deny — or reply allow" in c["body"]
    assert out.payload["buttons"] == [["✅", "p:req1:a"], ["♾️", "p:req1:s"], ["❌", "p:req1:d"]]
    assert c["m.mentions"] == {"user_ids": [OWNER]}
    bare = br.permission_prompt("req2", "Bash", {"command": "ls; id"}, "/w")
    [plain] = render(bare, [OWNER])
    assert (
        "React ✅ Allow · ❌ Deny — or reply allow or deny <reason>."
        in plain.payload["content"]["body"]
    ), "no session button, no `always` in the hint"
    assert f'<a href="https://matrix.to/#/{OWNER}">{OWNER}</a>' in c["formatted_body"]
    assert len(out.payload["txn"]) >= 16, "a transaction id, stored with the row"


def test_silent_messages_are_notices_and_the_status_has_a_stop_key() -> None:
    status = br.status_message(
        ["Read a.py"], "so far", running=True, stop_data="x:s1", max_preview=3000
    )
    [out] = render(status)
    assert out.payload["content"]["msgtype"] == "m.notice"
    assert out.payload["buttons"] == [["⏹", "x:s1"]]
    assert "m.mentions" not in out.payload["content"]
    done = render_edit(
        br.status_message(["Read a.py"], "Done", running=False, stop_data="", max_preview=3000)
    )
    assert "buttons" not in done.payload and "React" not in done.payload["content"]["body"]


def test_folded_output_is_a_details_element() -> None:
    c = content(Outbound((Folded("Output: Bash: ls", "a.py\n<b.py>"),)))
    assert c["formatted_body"] == (
        "<details><summary>Output: Bash: ls</summary><pre><code>a.py\n&lt;b.py&gt;\n</code></pre></details>"
    )
    assert c["body"] == "Output: Bash: ls\na.py\n<b.py>"


def test_code_with_backtick_fences_inside_gets_a_longer_fence() -> None:
    c = content(Outbound((Code("x = '```'", "python"),)))
    assert c["body"].startswith("````python\n") and c["body"].endswith("\n````")


def test_generic_buttons_get_keycaps() -> None:
    picker = Outbound(
        (Markdown("Mode?"),),
        ((Button("• Default", "m:s:0"),), (Button("Accept edits", "m:s:1"),)),
    )
    [out] = render(picker)
    assert out.payload["buttons"] == [["1\ufe0f\u20e3", "m:s:0"], ["2\ufe0f\u20e3", "m:s:1"]]
    assert "React 1️⃣ • Default · 2️⃣ Accept edits" in out.payload["content"]["body"]
    assert "or reply" not in out.payload["content"]["body"]


def test_assign_keys_never_repeats_a_key() -> None:
    keyed = buttons.assign_keys([Button("✅ Yes", "a"), Button("✅ Also", "b"), Button("No", "c")])
    assert [k for k, _, _ in keyed] == ["✅", "1\ufe0f\u20e3", "2\ufe0f\u20e3"]
    assert buttons.normalize("⏹️") == buttons.normalize("⏹")


def test_a_long_diff_file_is_its_own_payload() -> None:
    msg = br.diff_message("".join(f"+line {i}\n" for i in range(3000)), name="app.diff")
    out = render(msg)
    assert "content" in out[0].payload and out[-1].payload["file"]["name"] == "app.diff"
    assert out[-1].payload["file"]["mime"] == "text/x-diff"
    assert not render(Outbound(file=FileOut("x.bin", b"\0")))[0].payload["notify"]


def test_a_huge_code_block_in_markdown_is_split_and_every_part_is_a_code_block() -> None:
    code = "\n".join(f"print({i})  # a < b && c > d" for i in range(6000))
    text = f"Intro paragraph.\n\n```python\n{code}\n```\n\nOutro."
    parts = [p.payload["content"] for p in render(Outbound((Markdown(text),)))]
    assert len(parts) >= 4
    for c in parts:
        assert json_size(c) <= MAX_CONTENT_BYTES
    middle = [c for c in parts if "print(" in c["body"]]
    assert all(c["body"].lstrip().startswith(("```python", "Intro")) for c in middle)
    assert all('<code class="language-python">' in c["formatted_body"] for c in middle)
    joined = "".join(html_to_text(c["formatted_body"]) for c in parts)
    assert joined.count("# a < b && c > d") == 6000
    assert parts[0]["msgtype"] == "m.notice" and "Outro." in parts[-1]["body"]


_words = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_words, st.integers(1, 400)), min_size=1, max_size=40), st.booleans())
def test_every_part_fits_and_no_text_is_lost(pieces: list[tuple[str, int]], fenced: bool) -> None:
    text = "\n\n".join(" ".join([w.replace("`", "'")] * n) for w, n in pieces)
    if fenced:
        text = f"```\n{text}\n```"
    parts = render(br.final_message(text, duration_s=1, cost_usd=0, tools=[]))
    bodies = [p.payload["content"]["body"] for p in parts]
    assert all(json_size(p.payload["content"]) <= MAX_CONTENT_BYTES for p in parts)
    # whitespace of any kind (NBSP too) may be folded or trimmed; every visible character shows
    flat = "".join("".join(bodies).replace("```", "").split())
    for w, _ in pieces:
        assert "".join(w.replace("`", "'").split()) in flat


def test_an_edit_is_one_content_cut_at_the_start_with_an_ellipsis() -> None:
    long = "\n\n".join(f"Paragraph {i} " + "x" * 200 for i in range(400))
    edit = render_edit(Outbound((Markdown(long),)))
    c = edit.payload["content"]
    assert json_size(c) <= MAX_EDIT_CONTENT_BYTES and c["body"].endswith("…")
    assert c["body"].startswith("Paragraph 0 ")


# --- inbound ----------------------------------------------------------------------


def _event(content: dict[str, Any], sender: str = OWNER, **extra: Any) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "sender": sender,
        "event_id": "$e1",
        "content": content,
    } | extra


def test_a_thread_message_belongs_to_its_root_and_a_reply_names_its_target() -> None:
    in_thread = {
        "msgtype": "m.text",
        "body": "go on",
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": "$root",
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": "$x"},
        },
    }
    parsed = inbound.parse_message("!r", _event(in_thread), own_user="@bot:x", display_name="Ada")
    assert parsed is not None
    msg = parsed.message
    assert (
        msg.thread.thread_id == "$root"
        and msg.reply_to is None
        and msg.sender.display_name == "Ada"
    )
    reply = {
        "msgtype": "m.text",
        "body": "> <@bot:x> earlier\n\nyes",
        "m.relates_to": {"m.in_reply_to": {"event_id": "$q"}},
    }
    parsed = inbound.parse_message("!r", _event(reply), own_user="@bot:x", member_count=3)
    assert parsed is not None and parsed.message.reply_to == "$q" and parsed.message.text == "yes"
    assert parsed.message.thread.thread_id is None and parsed.message.chat_type == "group"


def test_what_the_bridge_must_not_see_is_dropped() -> None:
    edit = {
        "msgtype": "m.text",
        "body": "* x",
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$a"},
    }
    assert inbound.parse_message("!r", _event(edit), own_user="@bot:x") is None
    assert (
        inbound.parse_message(
            "!r", _event({"msgtype": "m.notice", "body": "bot talk"}), own_user="@bot:x"
        )
        is None
    )
    assert (
        inbound.parse_message(
            "!r", _event({"msgtype": "m.text", "body": "me"}, sender="@bot:x"), own_user="@bot:x"
        )
        is None
    )
    assert (
        inbound.parse_message(
            "!r", {"type": "m.room.message", "content": "junk"}, own_user="@bot:x"
        )
        is None
    )
    assert (
        inbound.parse_message("!r", _event({"msgtype": "m.text", "body": " "}), own_user="@bot:x")
        is None
    )


def test_attachments_are_file_refs_with_their_keys() -> None:
    enc = {
        "msgtype": "m.image",
        "body": "cat.png",
        "info": {"mimetype": "image/png", "size": 10},
        "file": {"url": "mxc://x/y", "key": {"k": "K"}, "iv": "I", "hashes": {"sha256": "H"}},
    }
    parsed = inbound.parse_message("!r", _event(enc), own_user="@bot:x")
    assert parsed is not None and parsed.message.text == ""
    [ref] = parsed.files
    assert (ref.kind, ref.source, ref.mime, ref.crypto and ref.crypto["iv"]) == (
        "image",
        "mxc://x/y",
        "image/png",
        "I",
    )
    plain = {
        "msgtype": "m.file",
        "body": "notes.txt",
        "url": "mxc://x/z",
        "info": {"size": 99_000_000},
    }
    [ref] = inbound.parse_message("!r", _event(plain), own_user="@bot:x").files  # type: ignore[union-attr]
    assert ref.kind == "file" and ref.crypto is None and (ref.size or 0) > ref.limit


def test_reactions_parse_and_the_button_map_survives_a_restart(tmp_path: Path) -> None:
    raw = {
        "type": "m.reaction",
        "sender": OWNER,
        "event_id": "$r",
        "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$p", "key": "⏹️"}},
    }
    reaction = inbound.parse_reaction("!r", raw, own_user="@bot:x")
    assert reaction == inbound.Reaction("!r", "$p", "⏹️", OWNER, "$r")
    assert inbound.parse_reaction("!r", raw | {"sender": "@bot:x"}, own_user="@bot:x") is None
    path = tmp_path / "buttons.json"
    buttons.ButtonMap(path).set("$p", buttons.Entry("!r", "$root", (("⏹", "x:s1"),)))
    again = buttons.ButtonMap(path)
    found = again.lookup("!r", "$p", "⏹️")
    assert found is not None and found[1] == "x:s1" and found[0].thread_id == "$root"
    assert again.lookup("!other", "$p", "⏹") is None and again.lookup("!r", "$p", "✅") is None
    again.forget("$p")
    assert buttons.ButtonMap(path).lookup("!r", "$p", "⏹") is None


def test_redactions_parse_and_only_multi_select_options_toggle() -> None:
    old = {"type": "m.room.redaction", "sender": OWNER, "redacts": "$r", "content": {}}
    v11 = {"type": "m.room.redaction", "sender": OWNER, "content": {"redacts": "$r"}}
    for raw in (old, v11):
        assert inbound.parse_redaction("!r", raw, own_user="@bot:x") == inbound.Redaction(
            "!r", "$r", OWNER
        )
    assert inbound.parse_redaction("!r", old | {"sender": "@bot:x"}, own_user="@bot:x") is None
    assert inbound.parse_redaction("!r", old | {"redacts": 5}, own_user="@bot:x") is None
    multi = buttons.Entry("!r", None, (("1", "q:ab:0:0"), ("o", "q:ab:0:o"), ("d", "q:ab:0:d")))
    single = buttons.Entry("!r", None, (("1", "q:ab:1:0"), ("o", "q:ab:1:o")))
    assert buttons.toggles(multi, "q:ab:0:0")
    assert not buttons.toggles(multi, "q:ab:0:d") and not buttons.toggles(multi, "q:ab:0:o")
    assert not buttons.toggles(single, "q:ab:1:0")
    assert not buttons.toggles(buttons.Entry("!r", None, (("✅", "p:x:a"),)), "p:x:a")


# --- pacing and errors --------------------------------------------------------------


class _SynapseBucket:
    """Synapse's `Ratelimiter.can_do_action` (synapse/api/ratelimiting.py)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.count, self.start = 0.0, 0.0

    def allow(self, now: float) -> bool:
        performed = self.count - (now - self.start) * self.rate
        if performed < 0:
            performed, self.count, self.start = 0.0, 0.0, now
        if performed > self.burst - 1:
            return False
        self.count += 1
        return True


@given(st.lists(st.floats(0, 3), min_size=1, max_size=60))
def test_the_pacer_never_sends_what_synapse_would_refuse(gaps: list[float]) -> None:
    clock = [100.0]
    pacer = Pacer(RateLimit(0.2, 10), clock=lambda: clock[0])
    server = _SynapseBucket(0.2, 10)
    for gap in gaps:
        clock[0] += gap
        wait = pacer.reserve()
        assert server.allow(clock[0] + wait)
    assert Pacer(RateLimit(0.2, 10)).delay() == 0.0


async def test_inline_pacing_hands_long_waits_back_to_the_outbox() -> None:
    clock = [0.0]
    pacer = Pacer(RateLimit(0.2, 2), clock=lambda: clock[0], margin=0.0)
    await pacer.inline()
    await pacer.inline()
    with pytest.raises(RateLimited) as e:
        await pacer.inline(max_wait=1.0)
    assert 4.9 < e.value.retry_after <= 5.0
    pacer.pause(30)
    assert pacer.delay() >= 30


def _error(errcode: str, status: int, **kw: Any) -> ErrorResponse:
    resp = ErrorResponse(f"{errcode} said no", errcode, **kw)

    class _T:
        pass

    transport = _T()
    transport.status = status  # type: ignore[attr-defined]
    resp.transport_response = transport  # type: ignore[assignment]
    return resp


def test_errors_map_to_the_outbox_vocabulary_and_hide_secrets() -> None:
    errors = MatrixErrors(["s3cret-password"])
    limited = errors.translate(_error("M_LIMIT_EXCEEDED", 429, retry_after_ms=2500))
    assert isinstance(limited, RateLimited) and limited.retry_after == 2.5
    assert isinstance(errors.translate(_error("M_UNKNOWN", 502)), TransientError)
    assert isinstance(errors.translate(_error("M_FORBIDDEN", 403)), PermanentError)
    assert isinstance(errors.exception(TimeoutError()), TransientError)
    assert "s3cret" not in str(errors.exception(ValueError("token s3cret-password leaked")))


def test_the_store_keeps_credentials_private(tmp_path: Path) -> None:
    store = MatrixStore(tmp_path / "store")
    store.prepare()
    store.save_credentials(Credentials("http://hs", "@b:x", "DEV", "tok"))
    assert store.load_credentials() == Credentials("http://hs", "@b:x", "DEV", "tok")
    assert stat.S_IMODE(store.credentials_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o700
    key = store.pickle_key()
    assert key == store.pickle_key() and len(key) > 30
    store.credentials_file.write_text("{not json")
    assert store.load_credentials() is None
    assert json.loads((store.path / "pickle.key").read_text().join('""')) == key


def test_a_long_turn_s_final_answer_mentions_the_owners() -> None:
    final = br.final_message("All done.", duration_s=75, cost_usd=0.1, tools=["Bash"])
    c = content(Outbound(final.blocks, notify=True, mention=True))
    assert c["msgtype"] == "m.text" and c["m.mentions"] == {"user_ids": [OWNER]}
    assert c["body"].startswith(OWNER) and "All done." in c["body"]
    assert "m.mentions" not in content(final), "no mention without a reason"
