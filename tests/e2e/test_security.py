"""Security tests that try the attack: encryption at rest read back from the
raw SQLite bytes, secrets grepped from a whole Slack run's logs and transcript, forged,
replayed, foreign, stale and strangers' button presses on Telegram and Slack (and
reactions on Matrix), hostile file names and paths for uploads and `get`.

Existing tests this extends rather than repeats: tests/e2e/test_e2e_telegram.py
(forged and replayed Telegram buttons, strangers), tests/integration/test_access.py (paths for
`new`), tests/e2e/test_attachments.py (inbox names, `get`), tests/e2e/test_logs.py (Telegram
secrets in the logs).
"""

from __future__ import annotations

import asyncio
import logging
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import select

from bridge.cli.logs import setup_logging
from bridge.files import FileRefused, read_inside, save_to_inbox
from storage.crypto import BodyCipher, load_or_create_key
from storage.models import AuditRow, PermissionRequestRow, SessionRow, TurnRow
from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.harness import OWNER, STRANGER, start_harness, stop_harness
from tests.support.slack_harness import OWNER as OWNER_SLACK
from tests.support.slack_harness import STRANGER as STRANGER_SLACK
from tests.support.slack_harness import start_slack_harness, stop_slack_harness

pytestmark = pytest.mark.e2e


def refusals(db: Any) -> list[AuditRow]:
    return [r for r in db.audit.recent(1000) if not r.allowed]


# --- encryption at rest -------------------------------------------------------------------


async def test_encrypted_storage_keeps_no_message_text_in_the_database_file(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "keys" / "db.key"
    # as `threadline run` does with `[storage] encrypt = true` (bridge/cli/daemon.py)
    h = await start_harness(tmp_path, cipher=BodyCipher(load_or_create_key(key_file)))
    try:
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        app = h.root / "app"
        h.model.on(
            "zebra-prompt-7781",
            ToolUse("Write", {"file_path": str(app / "a.txt"), "content": "quokka-content-5512\n"}),
            ToolUse("Write", {"file_path": str(app / "b.txt"), "content": "ibis-content-6620\n"}),
            Text("narwhal-answer-9923"),
        )
        topic, sid = await h.new_session(str(app), "zebra-prompt-7781")
        first = await h.wait_msg(lambda m: "Allow" in str(m.button_labels), thread_id=topic)
        assert "quokka-content-5512" in first.visible_text, "the diff is in the chat"
        h.press(first, "Allow")
        await h.wait_msg(
            lambda m: "b.txt" in m.visible_text and "Allow" in str(m.button_labels),
            thread_id=topic,
        )
        h.say("deny ocelot-reason-3391", thread_id=topic)
        await h.wait_text("narwhal-answer-9923", thread_id=topic)
        h.say('/schedule "0 9 * * 1" heron-schedule-1206', thread_id=topic)
        await h.wait_text("heron-schedule-1206", thread_id=topic)
        h.say("mallory-secret-4410", user=STRANGER)
        await h.tg.wait_until(lambda: len(refusals(h.db)) >= 1, timeout=15)
        assert (app / "a.txt").read_text() == "quokka-content-5512\n"
        # the repositories still read plain text
        assert h.db.sessions.get(sid).title.endswith("zebra-prompt-7781")
        with h.db.session() as s:
            raw_requests = list(s.exec(select(PermissionRequestRow)))
            raw_turns = list(s.exec(select(TurnRow)))
            raw_sessions = list(s.exec(select(SessionRow)))
        assert raw_requests and all(r.input_json.startswith("nacl:") for r in raw_requests)
        assert raw_turns and all(t.prompt.startswith("nacl:") for t in raw_turns)
        assert all(r.title.startswith("nacl:") for r in raw_sessions)
        assert "ocelot-reason-3391" in h.db.permissions.get(raw_requests[-1].id).reason
        assert any("mallory-secret-4410" in r.detail for r in refusals(h.db))
        running = _database_bytes(tmp_path)
    finally:
        await stop_harness(h)
    stopped = _database_bytes(tmp_path)
    for raw in (running, stopped):
        assert f"telegram:{OWNER}".encode() in raw, "the grep reads the right file"
        for marker in (
            "zebra-prompt-7781",  # the prompt (turns, session title, outbox)
            "quokka-content-5512",  # tool input and its diff (permission request, prompt)
            "ibis-content-6620",
            "ocelot-reason-3391",  # the deny reason
            "narwhal-answer-9923",  # Claude's answer (outbox, stream edits)
            "mallory-secret-4410",  # a stranger's message (audit detail)
            "heron-schedule-1206",  # a scheduled prompt
        ):
            assert marker.encode() not in raw, f"{marker} stored in plain text"


def _database_bytes(tmp_path: Path) -> bytes:
    db = tmp_path / "threadline.db"
    return b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists())


# --- button payloads -------------------------------------------------------------------------


async def test_telegram_foreign_forged_strangers_and_stale_presses_are_refused(
    tmp_path: Path,
) -> None:
    """Each attack on a pending Write: refused, audited, the file never written —
    and once the request timed out, its own Allow button is stale."""
    h = await start_harness(tmp_path, agent_extra={"permission_timeout_s": 6})
    try:
        app = h.root / "app"
        target = app / "pwned.txt"
        h.model.on(
            "guarded write",
            ToolUse("Write", {"file_path": str(target), "content": "x"}),
            Text("guarded done"),
        )
        topic, sid = await h.new_session(str(app), "guarded write")
        prompt = await h.wait_msg(lambda m: "Allow" in str(m.button_labels), thread_id=topic)
        allow = prompt.callback_data("Allow")
        owner = {"id": OWNER, "is_bot": False, "first_name": "Ada"}
        # a message outside the session's topic, and one in another chat
        elsewhere = next(m for m in h.bot_messages() if m.thread_id is None)
        stranger = {"id": STRANGER, "is_bot": False, "first_name": "Mallory"}
        h.tg.user_message(STRANGER, stranger, "hello")  # in the stranger's own chat
        other_chat = await h.tg.wait_for(lambda m: True, chat_id=STRANGER)
        before = len(refusals(h.db))
        h.tg.press_button(h.chat_id, prompt.message_id, "p:forgedrequest0:a", owner, strict=False)
        h.tg.press_button(h.chat_id, prompt.message_id, f"m:{sid}:99", owner, strict=False)
        h.tg.press_button(h.chat_id, elsewhere.message_id, allow, owner, strict=False)
        h.tg.press_button(STRANGER, other_chat.message_id, allow, owner, strict=False)
        h.press(prompt, "Allow", user=STRANGER)
        await h.tg.wait_until(lambda: len(refusals(h.db)) >= before + 5, timeout=20)
        new = refusals(h.db)[: len(refusals(h.db)) - before]
        details = " | ".join(r.detail for r in new)
        assert "unknown request" in details and details.count("from another thread") == 2
        assert "unknown button" in details, "a forged mode index"
        assert any(r.user == f"telegram:{STRANGER}" for r in new)
        await h.wait_text("No answer to the Write request", thread_id=topic, timeout=30)
        await h.wait_text("guarded done", thread_id=topic)
        h.tg.press_button(h.chat_id, prompt.message_id, allow, owner, strict=False)  # stale
        await h.tg.wait_until(
            lambda: any("already timeout" in r.detail for r in refusals(h.db)), timeout=20
        )
        assert not target.exists(), "no attack approved the Write"
        assert h.db.permissions.get(allow.split(":")[1]).state == "timeout"
        # an upload with a hostile name lands in the session's inbox, nowhere else
        h.model.on("check the upload", Text("upload seen"))
        h.tg.user_document(
            h.chat_id,
            owner,
            b"payload",
            file_name="../../../evil.txt",
            caption="check the upload",
            message_thread_id=topic,
        )
        await h.wait_text("upload seen", thread_id=topic)
        inbox = app / ".threadline" / "inbox"
        assert [p.name for p in inbox.iterdir()] == ["evil.txt"]
        found = await asyncio.to_thread(lambda: list(tmp_path.rglob("evil.txt")))
        assert found == [inbox / "evil.txt"]
    finally:
        await stop_harness(h)


@contextmanager
def debug_log(h: Any, path: Path) -> Iterator[None]:
    """The daemon's logging (bridge/cli/logs.py) at DEBUG into `path`, the client
    libraries included; restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    noisy = ("httpx", "slack_sdk", "slack_bolt", "aiohttp", "telegram", "nio")
    levels = {name: logging.getLogger(name).level for name in noisy}
    setup_logging("DEBUG", h.config.secrets(), str(path))
    for name in noisy:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield
    finally:
        for handler in root.handlers:
            handler.flush()
        root.handlers[:], level = saved
        root.setLevel(level)
        for name, lvl in levels.items():
            logging.getLogger(name).setLevel(lvl)
        logging.getLogger("apscheduler").setLevel(logging.NOTSET)


def slack_secrets(h: Any) -> dict[str, str]:
    return {
        "bot token": h.slack.bot_token,
        "app token": h.slack.app_token,
        "signing secret": h.slack.signing_secret,
        "Anthropic API key": h.env["ANTHROPIC_API_KEY"],
    }


def assert_no_secret(secrets: dict[str, str], **texts: str) -> None:
    for what, secret in secrets.items():
        assert len(secret) >= 6
        for where, text in texts.items():
            assert secret not in text, f"the {what} appears in the {where}"


def slack_transcript(h: Any) -> str:
    messages = [m.visible_text for m in h.slack.transcript]
    ephemerals = [
        e.text for user in (OWNER_SLACK, STRANGER_SLACK) for e in h.slack.ephemerals(user)
    ]
    return "\n".join(messages + ephemerals)


async def test_slack_foreign_forged_strangers_and_stale_presses_are_refused(
    tmp_path: Path,
) -> None:
    h = await start_slack_harness(tmp_path, speed=4.0, agent_extra={"permission_timeout_s": 6})
    log_file = tmp_path / "daemon.log"
    try:
        with debug_log(h, log_file):
            app = h.root / "app"
            target = app / "pwned.txt"
            h.model.on(
                "guarded write",
                ToolUse("Write", {"file_path": str(target), "content": "x"}),
                Text("guarded done"),
            )
            thread, _ = await h.new_session(str(app), "guarded write")
            prompt = await h.wait_msg(lambda m: "Allow" in str(m.button_labels), thread=thread)
            allow = prompt.button("Allow")["value"]
            dm = "D" + OWNER_SLACK[1:]
            h.say("!help", channel=dm)
            in_dm = await h.slack.wait_for(
                lambda m: "/help" in m.visible_text or "help" in m.visible_text, channel=dm
            )
            header = h.slack.message(h.channel, thread)
            before = len(refusals(h.db))
            h.slack.click(prompt, "Allow", user=OWNER_SLACK, value="p:forgedrequest0:a")
            h.slack.click(header, "Allow", user=OWNER_SLACK, value=allow)  # another thread
            h.slack.click(in_dm, "Allow", user=OWNER_SLACK, value=allow)  # another chat
            h.press(prompt, "Allow", user=STRANGER_SLACK)
            await h.slack.wait_until(lambda: len(refusals(h.db)) >= before + 4, 20)
            new = refusals(h.db)[: len(refusals(h.db)) - before]
            details = " | ".join(r.detail for r in new)
            # the header is no message of ours with buttons: refused before the broker
            foreign = details.count("from another thread") + details.count(
                "not on a message of ours"
            )
            assert "unknown request" in details and foreign == 2
            assert any(r.user == f"slack:{STRANGER_SLACK}" for r in new)
            await h.wait_text("No answer to the Write request", thread=thread, timeout=30)
            await h.wait_text("guarded done", thread=thread)
            h.press(prompt, "Allow", stale=True)  # a client that still shows the button
            await h.slack.wait_until(
                lambda: any("already timeout" in r.detail for r in refusals(h.db)), 20
            )
            assert not target.exists(), "no attack approved the Write"
    finally:
        await stop_slack_harness(h)
    log_text = log_file.read_text()
    assert "chat.postMessage" in log_text, "the log did capture the Web API traffic"
    assert_no_secret(slack_secrets(h), log=log_text, transcript=slack_transcript(h))


# --- secrets ---------------------------------------------------------------------------------


async def test_a_whole_slack_session_in_http_mode_leaks_no_secret(tmp_path: Path) -> None:
    """Signed HTTP delivery, a session with a permission prompt, error replies and a
    failing Web API call, all logged at DEBUG: no configured secret in the log, the
    chat, or the ephemeral answers (Telegram: tests/e2e/test_logs.py)."""
    h = await start_slack_harness(tmp_path, mode="http", speed=4.0)
    log_file = tmp_path / "daemon.log"
    try:
        with debug_log(h, log_file):
            app = h.root / "app"
            h.model.on(
                "leak check",
                ToolUse("Write", {"file_path": str(app / "f.txt"), "content": "f"}),
                Text("leak check done"),
            )
            h.slack.fail_next("chat.postMessage", error="internal_error", status=500)
            thread, _ = await h.new_session(str(app), "leak check")
            prompt = await h.wait_msg(lambda m: "Allow" in str(m.button_labels), thread=thread)
            h.press(prompt, "Allow")
            await h.wait_text("leak check done", thread=thread)
            h.say("!get ../../../etc/passwd", thread=thread)
            h.say("!nope", thread=thread)
            await h.wait_text("Unknown command", thread=thread)
            await h.wait_text("🚫", thread=thread)
    finally:
        await stop_slack_harness(h)
    log_text = log_file.read_text()
    assert "chat.postMessage" in log_text and "status: 500" in log_text, (
        "traffic and the fault logged"
    )
    assert_no_secret(slack_secrets(h), log=log_text, transcript=slack_transcript(h))


# --- paths -------------------------------------------------------------------------------------

HOSTILE_NAMES = (
    "../../x",
    "/etc/passwd",
    "..",
    "a\x00b.txt",
    "x" * 10_000,
    "~root/.ssh/authorized_keys",
    "\ud800\udfff.txt",
    "con\r\nname.txt",
    "./.git/config",
)


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@settings(max_examples=150, deadline=None)
@given(
    name=st.one_of(
        st.sampled_from(HOSTILE_NAMES),
        st.text(st.characters(blacklist_categories=()), max_size=300),
    )
)
def test_an_uploaded_file_lands_in_the_inbox_whatever_its_name(name: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cwd = base / "session"
        cwd.mkdir()
        saved = save_to_inbox(cwd, name, b"data")
        inbox = (cwd / ".threadline" / "inbox").resolve()
        assert saved.resolve().parent == inbox
        assert len(saved.name.encode()) <= 255
        assert _files_under(base) == {saved, cwd / ".threadline" / ".gitignore"}


@settings(max_examples=150, deadline=None)
@given(
    raw=st.one_of(
        st.sampled_from(HOSTILE_NAMES),
        st.text(st.characters(blacklist_categories=()), max_size=300),
    )
)
def test_get_refuses_or_stays_inside_the_session(raw: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp) / "session"
        cwd.mkdir()
        (cwd / "ok.txt").write_text("fine")
        try:
            data, rel = read_inside(str(cwd), raw, max_bytes=100)
        except FileRefused:
            return
        assert data == b"fine" and (cwd / rel).resolve() == (cwd / "ok.txt").resolve()


@settings(max_examples=100, deadline=None)
@given(raw=st.text(st.characters(blacklist_categories=()), max_size=200))
def test_new_refuses_or_stays_inside_the_roots_even_for_unencodable_text(raw: str) -> None:
    import tempfile

    from bridge.access.control import PathRefused, resolve_session_dir

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp).resolve()
        try:
            got = resolve_session_dir(raw, [str(root)])
        except PathRefused:
            return
        assert got == root or root in got.parents


def test_matrix_reactions_press_only_a_prompts_own_key_in_its_own_room() -> None:
    """Matrix buttons are reactions (adapters/matrix/buttons.py): one on an event that
    is not a prompt, with another key, or naming a prompt from another room presses
    nothing; a stranger's press reaches the bridge as the stranger's, where the owner
    check refuses it (as on Telegram and Slack above)."""
    from tests.e2e.test_fuzz import _NOW_MS, MX_ROOM, _mx_reaction, _run_matrix

    def reaction(
        own_id: str, *, target: str = "$prompt", key: str = "✅", sender: str = ""
    ) -> dict[str, Any]:
        event = _mx_reaction(_NOW_MS)
        event["content"]["m.relates_to"].update(event_id=target, key=key)
        return {**event, "event_id": own_id, "sender": sender or event["sender"]}

    assert [p.data for p in _run_matrix([reaction("$ok")])] == ["p:abcdefghijklmnop:a"]
    assert _run_matrix([reaction("$r1", target="$not-a-prompt")]) == []
    assert _run_matrix([reaction("$r2", key="👍")]) == []
    assert _run_matrix([reaction("$r3")], room="!elsewhere:localhost") == []
    (press,) = _run_matrix([reaction("$r4", sender="@mallory:localhost")])
    assert press.sender.key == "matrix:@mallory:localhost" and press.thread.chat_id == MX_ROOM


async def test_a_whole_matrix_session_leaks_no_secret(tmp_path: Path, synapse: Any) -> None:
    """Login, an encrypted session with a reaction approval and an error reply, all
    logged at DEBUG (matrix-nio included): neither the bot's password nor the access
    token it logged in with (which no config names, so no filter could redact it) is
    in the log or the room.  The start is logged with no redaction at all."""
    from tests.support.matrix_harness import start_matrix_harness, stop_matrix_harness

    start_log, log_file = tmp_path / "start.log", tmp_path / "daemon.log"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging("DEBUG", [], str(start_log))
    try:
        h = await start_matrix_harness(tmp_path, synapse)
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    try:
        with debug_log(h, log_file):
            app = h.root / "app"
            h.model.on(
                "leak check",
                ToolUse("Write", {"file_path": str(app / "f.txt"), "content": "f"}),
                Text("leak check done"),
            )
            thread, _ = await h.new_session(str(app), "leak check")
            prompt = await h.phone.wait_message(lambda m: "React ✅ Allow" in m.body)
            await h.react(prompt, "✅")
            await h.wait_text("leak check done", thread=thread)
            await h.say("!nope", thread=thread)
            await h.wait_text("Unknown command", thread=thread)
        secrets = {
            "password": h.bot.password,
            "access token": h.adapter.client.access_token,
            "Anthropic API key": h.env["ANTHROPIC_API_KEY"],
        }
        transcript = "\n".join(m.body + m.html for m in h.phone.messages.values())
    finally:
        await stop_matrix_harness(h)
    start_text, log_text = start_log.read_text(), log_file.read_text()
    assert "logged in as" in start_text and "nio." in log_text, "the logs caught the traffic"
    assert_no_secret(secrets, start_log=start_text, log=log_text, transcript=transcript)


async def test_recent_directory_buttons_work_where_posted_and_recheck_the_roots(
    tmp_path: Path,
) -> None:
    """`new` without a path offers recent directories as buttons in the chat it was
    typed in; a press there opens a session (it used to be refused as "not this
    thread's"), and a directory no longer under allowed_roots is refused."""
    h = await start_harness(tmp_path)
    try:
        first, _ = await h.new_session(str(h.root / "app"))
        h.say("/new")
        picker = await h.wait_msg(lambda m: "which directory" in m.visible_text.lower())
        assert picker.thread_id is None and picker.message_id
        topics_before = set(h.tg.topics(h.chat_id))
        h.press(picker, "app")
        await h.tg.wait_until(lambda: set(h.tg.topics(h.chat_id)) - topics_before, timeout=30)
        h.config.agent.allowed_roots = [str(tmp_path / "elsewhere")]
        h.press(picker, "app")
        refusal = await h.wait_text("🚫")
        assert "outside" in refusal.visible_text
        assert any(r.action == "new" for r in refusals(h.db))
        assert len(h.tg.topics(h.chat_id)) == len(topics_before) + 1
    finally:
        await stop_harness(h)


def test_slack_file_urls_outside_slack_are_never_fetched_with_the_token() -> None:
    """A file event is data from the network: its URL gets the bot token only if it
    is Slack's own (or the configured API host, in tests)."""
    from adapters.slack.client import file_host_allowed

    assert file_host_allowed("https://files.slack.com/files-pri/T1-F1/a.png")
    assert file_host_allowed("https://slack.com/files/a.png")
    assert file_host_allowed("http://127.0.0.1:8123/files/F1/a", "http://127.0.0.1:8123/api/")
    for url in (
        "https://evil.example.com/a.png",
        "https://slack.com.evil.example/a.png",
        "http://files.slack.com/a.png",  # not https
        "http://127.0.0.1:9999/files/F1/a",  # another port than the API's
        "file:///etc/passwd",
        "",
    ):
        assert not file_host_allowed(url, "http://127.0.0.1:8123/api/"), url
