"""`kill -9` at 20+ points of a scripted run: the transcript equals an uninterrupted run's.

The daemon runs as a real process (`python -m bridge.cli.main run`) against the fake Bot API
and the fake model, which live in the test and outlast it.  A "phone" plays the person
through a fixed script — two sessions, a long streamed answer that is split in two
messages, a Write that needs a permission prompt, a resumed context — and behaves like
one: it answers permission prompts with Allow, and when its prompt was interrupted (the
thread says so) or nothing happened for a while after a restart, it sends it again.

The script runs once undisturbed (the reference) and once while the daemon is killed
with SIGKILL at `MIN_KILLS` points chosen by a seeded RNG (`THREADLINE_KILL_SEED`
reproduces a run; the seed and every point are printed): after a random time, right
when a sendMessage or editMessageText reaches the fake (before or after it took
effect — the answer never reaches the daemon), while a permission prompt is waiting,
or while the outbox waits to retry a failed send.  The daemon is restarted after each
kill.

The transcript: per topic (in the order the topics were opened), the final visible
text of every bot message, in order, with durations, costs, session ids and the run's
directory normalised.  The marks of interruption are left out: "Interrupted" notices,
status messages edited to "Interrupted", permission prompts edited to "Expired".  Of a
permission prompt only the first line (tool, file) and the last (the decision) count:
its diff shows the file on disk, which a turn interrupted after the Write ran has
already changed when the person asks again.

Not chosen: the moments between a `/new`'s createForumTopic and the answer to the
header posted into the new topic (made outside the outbox, so not looked for like a
send).  A kill while createForumTopic is in flight leaves an empty topic the daemon
never heard of, and the `/new` unanswered; a kill after the topic was recorded and
before the header arrived is recovered (`test_a_kill_between_a_new_topic_and_its_
header_leaves_a_working_session`), but one while the header is in flight may show the
header twice.  Known gaps (README, "Delivery").

Also checked: no message was delivered twice or lost (every outbox send row sent, each
to its own message, and nothing else in the chat), no turn row is left running, the
Write's file exists with its content once, and no Claude Code process outlives the run.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from adapters.messages import ThreadRef
from adapters.telegram.adapter import TelegramAdapter
from adapters.telegram.config import TelegramConfig
from bridge import render
from bridge.outbox.outbox import Outbox
from storage.db import Database
from storage.models import OutboxRow, ThreadBinding, TurnRow
from tests.e2e.test_e2e_restart import Daemon
from tests.support.fakes.anthropic import FakeAnthropic, Text, ToolUse
from tests.support.fakes.claude_env import claude_env
from tests.support.fakes.telegram import FakeMessage, FakeTelegram
from tests.support.harness import OWNER, OWNER_NAME, config_text

pytestmark = pytest.mark.e2e
USER = {"id": OWNER, "is_bot": False, "first_name": OWNER_NAME}
MIN_KILLS = 20
EVENT_WAIT_S = 2.5  # an event-triggered kill falls back to a kill at once after this
LOST_AFTER_S = 12.0  # no sign of life for a prompt this long after a restart: send again
STORY = "\n\n".join(f"Paragraph {i}: " + "once upon a time " * 14 for i in range(1, 25))
STORY += "\n\nTHE END."


@dataclass(frozen=True)
class Step:
    topic: str  # the session's directory (its topic's name starts with it)
    prompt: str
    answer: str  # a piece of the final message that ends the step
    new: bool = False


STEPS = [
    Step("alpha", "tell the long story", "THE END.", new=True),
    Step("alpha", "write the notes file", "Notes written."),
    Step("beta", "remember the word kiwi", "I will remember kiwi.", new=True),
    Step("alpha", "count to five", "one two three four five"),
    Step("beta", "which word was it", "The word was kiwi."),
]


def script_model(model: FakeAnthropic, root: Path) -> None:
    model.on("tell the long story", Text(STORY, chunk=300, delay=0.02))
    notes = str(root / "alpha" / "notes.txt")
    # Read first, as Claude does: a retry after the Write already ran must not be refused
    # ("File has not been read yet") before its permission prompt.
    model.on(
        "write the notes file",
        ToolUse("Read", {"file_path": notes}),
        ToolUse("Write", {"file_path": notes, "content": "hello\n"}),
        Text("Notes written."),
    )
    model.on("remember the word kiwi", Text("I will remember kiwi."))
    model.on("count to five", Text("one two three four five", chunk=4, delay=0.02))
    model.on("which word was it", Text("The word was kiwi."))


# --- the run ------------------------------------------------------------------------------


@dataclass
class Run:
    """One daemon (restartable) against one fake Telegram, and the phone's state."""

    tg: FakeTelegram
    daemon: Daemon
    root: Path
    up_since: float = 0.0
    alive: bool = False
    topics: dict[str, int] = field(default_factory=dict)
    pressed: set[int] = field(default_factory=set)
    resent: int = 0

    async def start(self) -> None:
        await self.daemon.start(self.tg)
        self.alive, self.up_since = True, time.monotonic()

    def messages(self, thread_id: int | None = None) -> list[FakeMessage]:
        return self.tg.messages(OWNER, thread_id)

    def newest_id(self) -> int:
        return max((m.message_id for m in self.tg.all_bot_messages()), default=0)

    def topic_for(self, name: str) -> int | None:
        if name not in self.topics:
            for tid, topic in self.tg.topics(OWNER).items():
                if topic.name.startswith(f"{name}:"):
                    self.topics[name] = tid
        return self.topics.get(name)


def send(run: Run, step: Step) -> None:
    tid = run.topic_for(step.topic)
    if step.new and tid is None:
        run.tg.user_message(OWNER, USER, f"/new {run.root / step.topic} {step.prompt}")
    else:
        run.tg.user_message(OWNER, USER, step.prompt, message_thread_id=tid)


async def phone(run: Run, steps: list[Step]) -> None:
    """The person: each step's prompt, then wait for its answer; press Allow on
    prompts; send the prompt again if it was interrupted or seems lost."""
    for step in steps:
        mark = run.newest_id()
        sent_at = time.monotonic()
        send(run, step)
        while True:
            tid = run.topic_for(step.topic)
            fresh = [m for m in run.messages(tid) if m.message_id > mark] if tid else []
            if any(step.answer in (m.visible_text or "") for m in fresh):
                break
            for m in fresh:
                if m.message_id not in run.pressed and any("Allow" in b for b in m.button_labels):
                    run.pressed.add(m.message_id)
                    run.tg.press_button(
                        OWNER, m.message_id, m.callback_data("Allow"), USER, strict=False
                    )
            interrupted = any("Interrupted:" in (m.visible_text or "") for m in fresh)
            quiet = run.alive and time.monotonic() - max(sent_at, run.up_since) > LOST_AFTER_S
            if interrupted or (quiet and not fresh):
                run.resent += 1
                mark, sent_at = run.newest_id(), time.monotonic()
                send(run, step)
            await asyncio.sleep(0.1)


# --- killing ---------------------------------------------------------------------------------


class Killer:
    """Chooses and executes the kill points (see the module docstring)."""

    KINDS = ("time", "send-received", "send-applied", "edit-applied", "permission", "retry")

    def __init__(self, run: Run, rng: random.Random) -> None:
        self.run, self.rng = run, rng
        self.points: list[str] = []
        self._armed: tuple[str, str] | None = None
        self.opening = ""  # "topic" / "header": a /new is opening its topic
        self._countdown = 0
        self._fired = asyncio.Event()
        run.tg.on_api = self._hook

    def _hook(self, phase: str, method: str, _params: dict[str, Any]) -> None:
        # Not chosen (see the module docstring): from createForumTopic until the
        # header that follows it was answered.
        if (phase, method) == ("received", "createForumTopic"):
            self.opening = "topic"
        elif (phase, method) == ("applied", "sendMessage") and self.opening == "topic":
            self.opening = "header"
        elif (phase, method) == ("received", "sendMessage") and self.opening == "header":
            self.opening = ""  # the daemon heard the header's answer
        if self.opening:
            return
        if self._armed == (phase, method) and self.run.alive:
            self._countdown -= 1
            if self._countdown <= 0:
                self._armed = None
                os.kill(self.run.daemon.pid, signal.SIGKILL)  # before it hears the answer
                self.run.alive = False
                self._fired.set()

    async def _arm(self, phase: str, method: str, what: str) -> str:
        self._countdown = self.rng.randint(1, 3)
        what = f"{what} #{self._countdown}"
        self._fired.clear()
        self._armed = (phase, method)
        try:
            await asyncio.wait_for(self._fired.wait(), timeout=EVENT_WAIT_S)
            return what
        except TimeoutError:
            self._armed = None
            return f"{what} did not happen in time; killed then"

    async def _until(self, check: Callable[[], bool], timeout: float) -> bool:
        try:
            await self.run.tg.wait_until(check, timeout=timeout)
            return True
        except TimeoutError:
            return False

    async def kill_once(self, idle: bool = False) -> None:
        """One kill and restart; `idle`: the script is done, no events to wait for."""
        run, kind = self.run, "time" if idle else self.rng.choice(self.KINDS)
        if kind == "time":
            delay = round(self.rng.uniform(0.2, 1.2 if idle else 2.5), 2)
            await asyncio.sleep(delay)
            what = f"{delay} s after start"
        elif kind == "send-received":
            what = await self._arm("received", "sendMessage", "sendMessage received")
        elif kind == "send-applied":
            what = await self._arm("applied", "sendMessage", "sendMessage applied")
        elif kind == "edit-applied":
            what = await self._arm("applied", "editMessageText", "editMessageText applied")
        elif kind == "permission":
            found = await self._until(
                lambda: any(
                    "Allow" in " ".join(m.button_labels) for m in run.tg.all_bot_messages()
                ),
                timeout=EVENT_WAIT_S,
            )
            what = "permission prompt pending" if found else "no prompt in time; killed then"
        else:
            fault = run.tg.fail_next("sendMessage", 502)
            served = await self._until(lambda: fault.served > 0, timeout=EVENT_WAIT_S)
            run.tg.clear_faults()
            await asyncio.sleep(0.2)
            what = "during a retry of a failed send" if served else "no send in time; killed then"
        await self._until(lambda: not self.opening, timeout=EVENT_WAIT_S)
        if run.alive:
            run.daemon.proc.kill()  # type: ignore[union-attr]
            run.alive = False
        await run.daemon.proc.wait()  # type: ignore[union-attr]
        self.opening = ""
        self.points.append(f"{kind}: {what}")
        print(f"kill {len(self.points)}: {kind}: {what}", flush=True)
        await run.start()


# --- the transcript ----------------------------------------------------------------------------

_NORMALISE = [
    (re.compile(r"⏱ [0-9hms ]+"), "⏱ T"),
    (re.compile(r"\$\d+\.\d+"), "$C"),
    (re.compile(r"(?i)session [0-9a-f]{6}\b"), "session S"),
]
_INTERRUPTION_MARKS = ("Interrupted:", "Interrupted — the daemon restarted", "⌛ Expired")


def transcript(run: Run) -> list[tuple[str, list[str]]]:
    """(topic name, [bot message texts]) per topic, in the order topics were opened;
    the chat's general thread first."""
    threads: list[tuple[str, int | None]] = [("(general)", None)]
    threads += [(t.name, tid) for tid, t in sorted(run.tg.topics(OWNER).items())]
    out = []
    for name, tid in threads:
        texts = []
        for m in run.messages(tid):
            if tid is None and m.thread_id is not None:
                continue
            text = (m.visible_text or "").replace(str(run.root), "<root>")
            if any(mark in text for mark in _INTERRUPTION_MARKS):
                continue
            if text.startswith("🔐"):  # the diff shows the disk, which a retry may find changed
                lines = text.splitlines()
                text = f"{lines[0]} … {lines[-1]}"
            for pattern, repl in _NORMALISE:
                text = pattern.sub(repl, text)
            texts.append(text)
        out.append((name, texts))
    return out


def claude_processes(marker: str) -> list[int]:
    """Claude Code processes whose environment names this test's directory."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if b"claude" in cmd and marker.encode() in env:
            found.append(int(entry))
    return found


async def scripted_run(base: Path, model: FakeAnthropic, rng: random.Random | None) -> Run:
    root = base / "code"
    script_model(model, root)  # the newest script wins: this run's paths
    for step in STEPS:
        (root / step.topic).mkdir(parents=True, exist_ok=True)
    tg = await FakeTelegram(has_topics_enabled=True).start()
    tg.add_chat(OWNER, "private", first_name=OWNER_NAME)
    cfg = base / "config.toml"
    db_url = f"sqlite:///{base}/threadline.db"
    cfg.write_text(
        config_text(tg=tg, root=root, db_url=db_url, chat_id=OWNER)
        + f'[daemon]\nlog_file = "{base}/daemon.log"\n'
    )
    env = {**os.environ, **claude_env(base / "home", model.base_url)}
    run = Run(tg, Daemon(cfg, env), root)
    try:
        await run.start()
        script = asyncio.create_task(phone(run, STEPS))
        if rng is not None:
            killer = Killer(run, rng)
            while len(killer.points) < MIN_KILLS:
                await killer.kill_once(idle=script.done())
            print(
                f"{len(killer.points)} kills; the script was done before the last: {script.done()}"
            )
        await asyncio.wait_for(script, timeout=180)
        await run.daemon.stop()
        run.alive = False
    finally:
        if run.daemon.proc is not None and run.daemon.proc.returncode is None:
            run.daemon.proc.kill()
            await run.daemon.proc.wait()
        await tg.stop()
    return run


async def test_kill_9_at_20_points_leaves_the_transcript_of_an_undisturbed_run(
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("THREADLINE_KILL_SEED") or random.randrange(2**32))
    print(f"kill points seed: {seed} (THREADLINE_KILL_SEED={seed} reproduces the choice)")
    model = FakeAnthropic()
    await model.start()
    try:
        began = time.monotonic()
        reference = await scripted_run(tmp_path / "ref", model, None)
        print(f"reference run: {time.monotonic() - began:.1f} s")
        began = time.monotonic()
        killed = await scripted_run(tmp_path / "kill", model, random.Random(seed))
        print(f"run with kills: {time.monotonic() - began:.1f} s, {killed.resent} prompts resent")
    finally:
        await model.stop()

    want, got = transcript(reference), transcript(killed)
    if got != want:
        print("reference:", *want, "after kills:", *got, sep="\n")
    assert [n for n, _ in got] == [n for n, _ in want], "the same topics"
    for (name, w), (_, g) in zip(want, got, strict=True):
        assert g == w, f"topic {name!r} (seed {seed})"
    assert reference.resent == 0, "the undisturbed run needed no second tries"
    notes = killed.root / "alpha" / "notes.txt"
    assert notes.read_text() == "hello\n"
    _assert_each_message_once(killed, tmp_path / "kill")
    await asyncio.sleep(0)
    assert claude_processes(str(tmp_path)) == [], "no Claude Code process outlives the run"


async def test_a_send_that_arrived_but_whose_answer_was_lost_is_not_sent_again(
    tmp_path: Path,
) -> None:
    """The same window as a kill right after sendMessage took effect, in one process:
    the answer is lost (connection reset), the row is retried, and the retry finds the
    message instead of sending it twice; a send that was refused is sent."""
    tg = await FakeTelegram().start()
    tg.set_rate_limits(enabled=False)
    tg.add_chat(OWNER, "private", first_name=OWNER_NAME)
    cfg = TelegramConfig(enabled=True, token=tg.token, base_url=tg.base_url)
    adapter = TelegramAdapter(cfg, owners_hint=[f"telegram:{OWNER}"])
    db = Database(f"sqlite:///{tmp_path}/threadline.db")
    db.migrate()
    outbox = Outbox(db, {"telegram": adapter}, retry_initial=0.05, retry_max=0.2)
    thread = ThreadRef("telegram", str(OWNER), None)

    async def ignore(_event: Any) -> None:
        return None

    try:
        await adapter.start(ignore)
        await outbox.start()
        [one] = outbox.enqueue(thread, render.notice("one"))
        await outbox.wait_sent(one, timeout=10)
        tg.fail_next("sendMessage", applied=True, reset=True)  # arrives; no answer
        [two] = outbox.enqueue(thread, render.notice("two"))
        tg.fail_next("sendMessage", 502)  # refused
        [three] = outbox.enqueue(thread, render.notice("three"))
        await outbox.wait_sent(three, timeout=10)
        sent = tg.messages(OWNER)
        assert [m.visible_text for m in sent] == ["one", "two", "three"]
        assert outbox.platform_message_id(two) == str(sent[1].message_id)
        assert tg.calls["sendMessage"] == 4, "two was found, not sent again; three was"
    finally:
        await outbox.stop()
        await adapter.stop()
        db.close()
        await tg.stop()


def _assert_each_message_once(run: Run, base: Path) -> None:
    db = Database(f"sqlite:///{base}/threadline.db")
    try:
        with db.session() as s:
            sends = list(s.exec(select(OutboxRow).where(OutboxRow.op == "send")))
            headers = list(s.exec(select(ThreadBinding)))
            turns = list(s.exec(select(TurnRow)))
    finally:
        db.close()
    assert Counter(r.state for r in sends) == {"sent": len(sends)}, "nothing lost"
    ids = Counter(r.platform_message_id for r in sends)
    assert all(n == 1 for n in ids.values()), "one chat message per outbox row"
    ours = {int(i) for i in ids if i} | {int(b.header_message_id or 0) for b in headers}
    bot = {m.message_id for m in run.tg.all_bot_messages()}
    assert bot == ours, "every message in the chat is one we meant to send, once"
    assert not [t.id for t in turns if t.state == "running"], "no turn left running"


async def test_a_kill_between_a_new_topic_and_its_header_leaves_a_working_session(
    tmp_path: Path,
) -> None:
    """The window the 20-point test leaves out: `createForumTopic` has taken effect,
    the daemon dies before it hears the answer... the topic id is recorded as soon as
    the answer arrives, so the kill here is right after — before the header is
    posted.  On restart the topic gets its header, the chat its "started" notice, the
    thread an interruption notice; the prompt sent again there is answered there; no
    second topic."""
    model = FakeAnthropic()
    await model.start()
    root = tmp_path / "code"
    (root / "alpha").mkdir(parents=True)
    model.on("say hi", Text("Hi there."))
    tg = await FakeTelegram(has_topics_enabled=True).start()
    tg.add_chat(OWNER, "private", first_name=OWNER_NAME)
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        config_text(tg=tg, root=root, db_url=f"sqlite:///{tmp_path}/threadline.db", chat_id=OWNER)
    )
    env = {**os.environ, **claude_env(tmp_path / "home", model.base_url)}
    run = Run(tg, Daemon(cfg, env), root)
    killed = asyncio.Event()

    def kill_before_the_header(phase: str, method: str, params: dict[str, Any]) -> None:
        # The header is the first sendMessage into the new topic.
        if (phase, method) == ("received", "sendMessage") and params.get("message_thread_id"):
            if run.alive and not killed.is_set():
                os.kill(run.daemon.pid, signal.SIGKILL)
                run.alive = False
                killed.set()
                raise ConnectionResetError  # the header never arrives

    try:
        await run.start()
        tg.on_api = kill_before_the_header
        tg.user_message(OWNER, USER, f"/new {root / 'alpha'} say hi")
        await asyncio.wait_for(killed.wait(), timeout=30)
        await run.daemon.proc.wait()  # type: ignore[union-attr]
        tg.on_api = None
        [topic] = tg.topics(OWNER)
        assert not run.messages(topic), "killed before the header"
        await run.start()
        await tg.wait_for(
            lambda m: "Interrupted:" in (m.visible_text or ""), timeout=30, thread_id=topic
        )
        header = run.messages(topic)[0]
        assert "📂" in (header.visible_text or "") and "alpha" in (header.visible_text or "")
        await tg.wait_for(lambda m: "started in" in (m.visible_text or ""), 30, chat_id=OWNER)
        tg.user_message(OWNER, USER, "say hi", message_thread_id=topic)
        await tg.wait_for(lambda m: "Hi there." in (m.visible_text or ""), 60, thread_id=topic)
        assert list(tg.topics(OWNER)) == [topic], "no second topic"
    finally:
        if run.daemon.proc is not None and run.daemon.proc.returncode is None:
            run.daemon.proc.kill()
            await run.daemon.proc.wait()
        await tg.stop()
        await model.stop()
