"""The owner's phone as Element has it, for the Python tests: drives
`tests/support/element/phone.mjs` (matrix-js-sdk + the Rust crypto from npm, the
stack Element Web runs) over JSON lines.

One request, one reply (`call`); everything the phone sees arrives as pushed lines:
room events after decryption (`ElementEvent`, kept per event id and replaced when a
late key decrypts one) folded into `messages` (edits applied, reactions collected),
and verification changes (`verifications`, by the phone's own `vid`).  Tests wait on
conditions over that state (`wait`), never on fixed sleeps.

`element_missing()` says why the phone cannot run here (no `node`, or the npm
packages not installed: `npm ci` in tests/support/element); `require_element()` turns
that into a skip, or a failure when THREADLINE_REQUIRE_SYNAPSE=1 (CI must have it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest

HERE = Path(__file__).resolve().parent / "element"
SCRIPT = HERE / "phone.mjs"
PACKAGES = ("matrix-js-sdk", "@matrix-org/matrix-sdk-crypto-wasm")
T = TypeVar("T")


def element_missing() -> str | None:
    """Why the Element phone cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed (Element's stack runs on Node.js)"
    missing = [p for p in PACKAGES if not (HERE / "node_modules" / p / "package.json").exists()]
    if missing:
        return f"npm packages missing: {', '.join(missing)} (run `npm ci` in {HERE})"
    return None


def require_element() -> None:
    if (reason := element_missing()) is None:
        return
    if os.environ.get("THREADLINE_REQUIRE_SYNAPSE") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


class PhoneError(RuntimeError):
    """The phone answered a request with an error, or died."""


@dataclass
class ElementEvent:
    """One room event as matrix-js-sdk shows it (clear type and content)."""

    room_id: str
    event_id: str
    type: str
    sender: str
    state_key: str | None
    content: dict[str, Any]
    relates_to: dict[str, Any] | None
    encrypted: bool
    failure: str | None  # js-sdk's DecryptionFailureCode, None when it decrypted
    thread_root: str | None
    shield: dict[str, Any] | None  # {"colour": none|grey|red, "reason": ...}
    seen_at: float  # time.time() when the phone saw it in this state

    @classmethod
    def from_push(cls, line: dict[str, Any]) -> ElementEvent:
        return cls(
            room_id=line["room_id"],
            event_id=line["event_id"],
            type=line["type"],
            sender=line["sender"],
            state_key=line.get("state_key"),
            content=line.get("content") or {},
            relates_to=line.get("relates_to"),
            encrypted=bool(line.get("encrypted")),
            failure=line.get("failure"),
            thread_root=line.get("thread_root"),
            shield=line.get("shield"),
            seen_at=float(line["t"]),
        )


@dataclass
class ElementMessage:
    """An `m.room.message` with its edits applied and the reactions on it."""

    event: ElementEvent
    versions: list[dict[str, Any]] = field(default_factory=list)  # original, then edits
    version_times: list[float] = field(default_factory=list)
    reactions: list[tuple[str, str, str]] = field(default_factory=list)  # sender, key, event

    @property
    def event_id(self) -> str:
        return self.event.event_id

    @property
    def body(self) -> str:
        return str(self.versions[-1].get("body", "")) if self.versions else ""

    @property
    def thread(self) -> str | None:
        rel = self.event.relates_to or {}
        return rel.get("event_id") if rel.get("rel_type") == "m.thread" else None

    def reaction_keys(self, sender: str) -> list[str]:
        return [k for s, k, _ in self.reactions if s == sender]


class ElementPhone:
    """A `node phone.mjs` process and what it has seen."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.user_id = ""
        self.device_id = ""
        self.events: dict[str, ElementEvent] = {}
        self.order: list[str] = []  # event ids, first seen first
        self.verifications: dict[int, list[dict[str, Any]]] = {}
        self.trust: list[dict[str, Any]] = []  # UserTrustStatusChanged, in order
        self.shown: dict[str, ElementMessage] = {}  # by event id, first seen first
        self._folded: set[str] = set()
        self._orphans: dict[str, list[ElementEvent]] = {}
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next = 0
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._log: IO[bytes] | None = None

    async def start(self) -> ElementPhone:
        require_element()
        self._log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            "node",
            str(SCRIPT),
            cwd=HERE,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            limit=16 * 1024 * 1024,  # one pushed event can carry a long answer
        )
        hello: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[-1] = hello
        self._reader = asyncio.create_task(self._read())
        try:
            await asyncio.wait_for(hello, 30)
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(PhoneError, TimeoutError, ConnectionError):
                await self.call("stop", timeout=10)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._log is not None:
            self._log.close()
        self.proc = None

    # --- the protocol -------------------------------------------------------------

    async def call(self, cmd: str, *, timeout: float = 60.0, **args: Any) -> Any:
        proc = self.proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise PhoneError(f"the phone is not running ({cmd})\n{self.log_tail()}")
        self._next += 1
        rid = self._next
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        proc.stdin.write((json.dumps({"id": rid, "cmd": cmd, **args}) + "\n").encode())
        await proc.stdin.drain()
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(rid, None)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # not ours: the protocol lines are JSON objects
            self._take(msg)
        error = PhoneError(f"the phone exited\n{self.log_tail()}")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._changed.set()

    def _take(self, msg: dict[str, Any]) -> None:
        if msg.get("push") == "hello":
            self._resolve(-1, True, msg)
        elif msg.get("push") == "timeline":
            event = ElementEvent.from_push(msg)
            if event.event_id not in self.events:
                self.order.append(event.event_id)
            self.events[event.event_id] = event
            self._fold(event)
        elif msg.get("push") == "verification":
            self.verifications.setdefault(int(msg["vid"]), []).append(msg)
        elif msg.get("push") == "trust":
            self.trust.append(msg)
        elif "id" in msg:
            self._resolve(msg["id"], msg.get("ok", False), msg.get("result", msg.get("error")))
        self._changed.set()

    def _resolve(self, rid: Any, ok: bool, value: Any) -> None:
        future = self._pending.get(rid)
        if future is None or future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(PhoneError(str(value)))

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def wait(self, check: Callable[[], T | None], timeout: float = 30.0) -> T:
        """The first truthy value of `check()`, re-evaluated whenever a line arrives."""
        deadline = time.monotonic() + timeout
        while True:
            if value := check():
                return value
            if self.proc is None or self.proc.returncode is not None:
                raise PhoneError(f"the phone exited while waiting\n{self.log_tail()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{getattr(check, '__name__', 'condition')} after {timeout} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    # --- the person's actions -------------------------------------------------------

    async def login(self, base_url: str, user_id: str, password: str) -> dict[str, Any]:
        got = await self.call("login", base_url=base_url, user_id=user_id, password=password)
        self.user_id, self.device_id = got["user_id"], got["device_id"]
        return dict(got)

    async def create_dm(self, invite: list[str], name: str = "") -> str:
        got = await self.call("create_dm", invite=invite, name=name)
        return str(got["room_id"])

    async def send(self, room_id: str, body: str, *, thread: str | None = None) -> str:
        got = await self.call("send", room_id=room_id, body=body, thread_id=thread)
        return str(got["event_id"])

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        got = await self.call("react", room_id=room_id, event_id=event_id, key=key)
        return str(got["event_id"])

    async def isolation(self, *, exclude_insecure: bool, blacklist_unverified: bool) -> None:
        await self.call(
            "isolation",
            exclude_insecure=exclude_insecure,
            blacklist_unverified=blacklist_unverified,
        )

    async def device_status(self, user_id: str, device_id: str) -> dict[str, Any] | None:
        got = await self.call("device_status", user_id=user_id, device_id=device_id)
        return None if got is None else dict(got)

    async def user_status(self, user_id: str) -> dict[str, Any]:
        return dict(await self.call("user_status", user_id=user_id))

    async def devices(self, user_id: str) -> list[dict[str, Any]]:
        return list(await self.call("devices", user_id=user_id))

    # --- verification -------------------------------------------------------------

    async def wait_trusted(self, user_id: str, timeout: float = 30.0) -> float:
        """When (phone clock) Element's stack started showing `user_id` as verified."""

        def verified() -> float | None:
            return next(
                (float(t["t"]) for t in self.trust if t["user_id"] == user_id and t["is_verified"]),
                None,
            )

        return await self.wait(verified, timeout)

    def verification(self, vid: int) -> dict[str, Any]:
        """The latest state of a verification, its fields merged over its pushes."""
        merged: dict[str, Any] = {}
        for push in self.verifications.get(vid, []):
            merged.update({k: v for k, v in push.items() if v is not None})
        return merged

    def phase_seen(self, vid: int, phase: str) -> dict[str, Any] | None:
        return next((p for p in self.verifications.get(vid, []) if p.get("phase") == phase), None)

    async def wait_emoji(self, vid: int, timeout: float = 30.0) -> list[tuple[str, str]]:
        def shown() -> dict[str, Any] | None:
            if failed := self.phase_seen(vid, "Failed") or self.phase_seen(vid, "Cancelled"):
                raise PhoneError(f"verification {vid} ended: {failed}")
            return self.phase_seen(vid, "ShowSas")

        push = await self.wait(shown, timeout)
        return [(str(e), str(n)) for e, n in push["emoji"]]

    # --- what the person sees -------------------------------------------------------

    def room_events(self, room_id: str) -> list[ElementEvent]:
        return [self.events[e] for e in self.order if self.events[e].room_id == room_id]

    def messages(self, room_id: str) -> list[ElementMessage]:
        """The room's messages as a timeline shows them (live objects: edits and
        reactions keep arriving); events that did not decrypt are left out."""
        return [m for m in self.shown.values() if m.event.room_id == room_id]

    def _fold(self, ev: ElementEvent) -> None:
        """Add a decrypted event to what the timeline shows, once."""
        if ev.failure is not None or ev.event_id in self._folded:
            return
        self._folded.add(ev.event_id)
        rel = ev.relates_to or {}
        if ev.type == "m.room.message" and rel.get("rel_type") != "m.replace":
            message = self.shown[ev.event_id] = ElementMessage(ev, [ev.content], [ev.seen_at])
            for later in self._orphans.pop(ev.event_id, []):
                self._apply(message, later)
        elif rel.get("event_id"):
            target = str(rel["event_id"])
            if target in self.shown:
                self._apply(self.shown[target], ev)
            else:  # an edit or reaction seen before the event it relates to
                self._orphans.setdefault(target, []).append(ev)

    @staticmethod
    def _apply(target: ElementMessage, ev: ElementEvent) -> None:
        rel = ev.relates_to or {}
        if ev.type == "m.room.message" and rel.get("rel_type") == "m.replace":
            if ev.sender == target.event.sender and "m.new_content" in ev.content:
                target.versions.append(ev.content["m.new_content"])
                target.version_times.append(ev.seen_at)
        elif ev.type == "m.reaction" and rel.get("rel_type") == "m.annotation":
            target.reactions.append((ev.sender, str(rel.get("key", "")), ev.event_id))

    def failures(self, room_id: str) -> list[ElementEvent]:
        return [e for e in self.room_events(room_id) if e.failure is not None]

    async def wait_message(
        self, room_id: str, check: Callable[[ElementMessage], bool], timeout: float = 30.0
    ) -> ElementMessage:
        def found() -> ElementMessage | None:
            return next((m for m in self.messages(room_id) if check(m)), None)

        return await self.wait(found, timeout)

    def membership(self, room_id: str, user_id: str) -> str | None:
        """`user_id`'s latest membership in the room, as the phone's timeline has it."""
        found = [
            e
            for e in self.room_events(room_id)
            if e.type == "m.room.member" and e.state_key == user_id
        ]
        return str(found[-1].content.get("membership")) if found else None
