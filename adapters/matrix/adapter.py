"""The Matrix `ChatAdapter`: matrix-nio (with E2EE, vodozemac) wired to the bridge's seam.

Owns the nio `AsyncClient` (logged in on one persistent device, `client.py`), the sync
loop (a registered task; every response goes to the `Receiver`, `receiver.py`) and the
`Outgoing` side that delivers rendered outbox rows (`outgoing.py`), all sharing one
`Pacer` for the homeserver's per-user message budget.  The first sync after a start
resumes from the position saved in the store's inbox (`inbox.py`), so what was sent
while the daemon was down is handled now; a new device's first sync is history only.
A session is an `m.thread` rooted at its header message, posted in the room of
`[matrix] room` or else the room the command came from: `ThreadRef("matrix", room id,
header event id)`.  With
`encryption = "required"` (the default) nothing is sent to, or taken from, an
unencrypted room except the notice saying why.

Trust: after login the bot cross-signs its own device (`crosssign.py`), then registers
the SAS responders before the first sync, so a verification request waiting in it is
answered: to-device (`verification.py`, between devices) and in-room
(`room_verification.py`, what Element uses to verify another user).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from urllib.parse import quote

from nio import AsyncClient, ErrorResponse

from adapters.base import ChatAdapter, InboundSink, TransientError
from adapters.matrix import client as mx_client
from adapters.matrix import limits
from adapters.matrix import render as mx_render
from adapters.matrix.buttons import ButtonMap
from adapters.matrix.config import MatrixConfig
from adapters.matrix.e2ee import crosssign, room_verification, verification
from adapters.matrix.e2ee.sas_core import DecisionHook, owner_ids
from adapters.matrix.e2ee.store import MatrixStore
from adapters.matrix.errors import MatrixErrors
from adapters.matrix.inbox import Inbox
from adapters.matrix.markdown import escape
from adapters.matrix.outgoing import Outgoing
from adapters.matrix.pacing import Pacer
from adapters.matrix.receiver import Receiver
from adapters.matrix.render import txn
from adapters.matrix.trust_gate import Report
from adapters.messages import Inbound, Outbound, Rendered, ThreadRef
from adapters.tasks import TaskGroup

log = logging.getLogger(__name__)

GATE_POLL_S = 0.5  # how often a paused sync loop looks whether it may take events again


class MatrixAdapter(ChatAdapter):
    platform = "matrix"

    def __init__(
        self,
        config: MatrixConfig,
        *,
        owners_hint: Sequence[str] = (),
        rate: limits.RateLimit | None = None,
    ) -> None:
        self.config = config
        self.owners = tuple(
            o.removeprefix("matrix:") for o in owners_hint if o.startswith("matrix:")
        )
        self.rate = rate or limits.RateLimit(config.rate_per_second, config.rate_burst)
        self.capabilities = limits.capabilities(self.rate)
        self.pacer = Pacer(self.rate)
        self.errors = MatrixErrors([config.password, config.access_token])
        self.store = MatrixStore(config.store_path)
        self.buttons = ButtonMap(None)
        self.tasks = TaskGroup()
        self.username = ""
        self.receiver: Receiver | None = None
        self.inbox: Inbox | None = None
        self._client: AsyncClient | None = None
        self._sink: InboundSink | None = None
        self._sas: verification.SasResponder | None = None
        self._room_sas: room_verification.RoomSasResponder | None = None
        self._invite_check: Callable[[str], bool] | None = None
        self._report: Report | None = None
        self._gate: Callable[[], bool] | None = None
        self._sas_hook: DecisionHook | None = None
        self.outgoing = self._outgoing()

    def add_owner(self, user_id: str) -> None:
        """A paired owner: their invites accepted, devices trusted on first use, SAS
        verifications answered, mentioned on prompts and finals."""
        if user_id in self.owners:
            return
        self._set_owners((*self.owners, user_id))

    def remove_owner(self, user_id: str) -> None:
        self._set_owners(tuple(o for o in self.owners if o != user_id))

    def _set_owners(self, owners: tuple[str, ...]) -> None:
        self.owners = owners
        if self.receiver is not None:
            self.receiver.owners = self.owners
        for sas in (self._sas, self._room_sas):
            if sas is not None:
                sas.owners = owner_ids(self.owners)

    def open_invites(self, check: Callable[[str], bool]) -> None:
        """Strangers' invites are accepted while `check(inviter)` says a pairing code
        is open, so a new person can reach the bot to send `!pair CODE`."""
        self._invite_check = check
        if self.receiver is not None:
            self.receiver.invite_open = check

    def report_refusals(self, report: Report) -> None:
        """Events refused as possibly forged by the homeserver are audit-logged by
        `report(sender, action, detail)`, which says whether to tell the sender."""
        self._report = report
        if self.receiver is not None:
            self.receiver.trust.report = report

    def set_receive_gate(self, gate: Callable[[], bool]) -> None:
        """Take events only while `gate()` (this host is the gateway and is not
        stopping): the sync loop pauses, and a sync answered meanwhile is left unhandled
        with the position unsaved, so the next start (or gateway) takes its events."""
        self._gate = gate
        if self.receiver is not None:
            self.receiver.gate = gate

    def set_verification_hook(self, hook: DecisionHook) -> None:
        """Where the person answers an emoji verification (`bridge/verify_desk.py`):
        the bot says "they match" only after they did there."""
        self._sas_hook = hook
        if self._room_sas is not None:
            self._room_sas.on_pending = hook

    def _outgoing(self) -> Outgoing:
        return Outgoing(
            lambda: self.client,
            encryption=self.config.encryption,
            pacer=self.pacer,
            errors=self.errors,
            buttons=self.buttons,
            tasks=self.tasks,
        )

    # --- lifecycle --------------------------------------------------------------------

    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            raise TransientError("the Matrix client is not running")
        return self._client

    async def start(self, sink: InboundSink) -> None:
        self._sink = sink
        self.store.prepare()
        self.buttons = ButtonMap(self.store.buttons_file)
        self.outgoing = self._outgoing()
        encryption = self.config.encryption != "off"
        self._client = client = await mx_client.login(
            self.config, self.store, self.errors, encryption=encryption
        )
        try:
            if client.olm is not None and client.should_upload_keys:
                self.errors.check(await client.keys_upload())
            master_key = await self._cross_sign()
            self._sas = verification.SasResponder(client, self.owners, master_key=master_key)
            self._sas.register()
            self._room_sas = room_verification.RoomSasResponder(
                client,
                self.owners,
                master_key=master_key,
                pace=self.pacer.wait,
                on_pending=self._sas_hook,
            )
            self._room_sas.register()
            self.inbox = inbox = Inbox(self.store.path / "inbox.db")
            self.receiver = Receiver(
                client,
                owners=self.owners,
                encryption=self.config.encryption,
                buttons=self.buttons,
                errors=self.errors,
                deliver=self._deliver,
                notify=self.outgoing.notice_later,
                pace=self.pacer.wait,
                inbox=inbox,
                notify_in=self._notice_in,
            )
            if self._invite_check is not None:
                self.receiver.invite_open = self._invite_check
            self.receiver.gate = self._gate
            self.receiver.trust.report = self._report
            self.receiver.trust.approvals = self.config.approvals
            self.receiver.trust.devices.pins = self.store.path / "identity-pins.json"
            # nio's own token (saved before its events were handled) only for a store
            # from before the inbox; neither: a new device, whose first sync is history
            since = inbox.position(client.device_id) or client.loaded_sync_token or None
            first = await self.errors.call(
                lambda: client.sync(
                    timeout=0,
                    since=since,
                    sync_filter=mx_client.SYNC_FILTER if since else mx_client.FIRST_SYNC_FILTER,
                    full_state=True,
                )
            )
            self.receiver.catching_up = True
            try:
                await self.receiver.handle(first, since=since, history=since is None)
            finally:
                self.receiver.catching_up = False
            await self._join_control_room()
            self.tasks.spawn(self._sync_forever(), name="matrix-sync")
        except BaseException:
            await self._shutdown()
            raise
        log.info(
            "Matrix: %s up on device %s (encryption %s)%s",
            client.user_id,
            client.device_id,
            self.config.encryption,
            "" if self.owners else "; no Matrix owner configured yet",
        )

    async def _cross_sign(self) -> str | None:
        """Cross-sign the bot's device (idempotent); returns the bot's master key."""
        if not self.config.password:
            log.warning("Matrix: cross-signing needs [matrix] password; the bot stays unverified")
            return None
        try:
            state = await crosssign.ensure_cross_signed(
                self.client, password=self.config.password, store_path=self.store.path
            )
        except Exception as e:  # an unverified bot still works; say why it is unverified
            log.error(
                "Matrix: cross-signing the bot's device failed: %s", self.errors.redact(repr(e))
            )
            return None
        return getattr(state, "master_key", None)

    async def _join_control_room(self) -> None:
        room = self.config.room
        if not room or room in self.client.rooms:
            return
        try:
            await self.pacer.wait()
            self.errors.check(await self.client.join(room))
        except Exception as e:
            log.error("Matrix: cannot join the control room %s: %s (invite the bot)", room, e)

    async def _sync_forever(self) -> None:
        backoff = 1.0
        while True:
            if self._gate is not None and not self._gate():
                await asyncio.sleep(GATE_POLL_S)
                continue
            # from the saved position: behind nio's own after a batch left unhandled
            saved = self.inbox.position(self.client.device_id) if self.inbox else None
            since = saved or self.client.next_batch or None
            try:
                resp = await self.client.sync(
                    timeout=mx_client.SYNC_TIMEOUT_MS,
                    sync_filter=mx_client.SYNC_FILTER,
                    since=since,
                )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                resp = None
                log.warning("Matrix: sync failed: %s", self.errors.redact(repr(e))[:300])
            if resp is None or isinstance(resp, ErrorResponse):
                if resp is not None:
                    log.warning("Matrix: sync refused: %s", self.errors.redact(str(resp)))
                await asyncio.sleep(backoff)
                backoff = min(15.0, backoff * 2)  # after an outage, back within 15 s
                continue
            backoff = 1.0
            assert self.receiver is not None
            try:
                await self.receiver.handle(resp, since=since)
            except Exception:
                log.exception("Matrix: handling a sync response failed")
                await asyncio.sleep(backoff)  # the batch comes again: not in a tight loop

    async def stop(self) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        await self.tasks.close()
        if self._room_sas is not None:
            await self._room_sas.close()  # cancels its timeout timers
        self._sas = self._room_sas = None
        client, self._client = self._client, None
        if client is not None:
            await client.close()
        inbox, self.inbox = self.inbox, None
        if inbox is not None:
            inbox.close()

    def _notice_in(self, thread: ThreadRef, text: str) -> None:
        """A notice in `thread`, sent in the background (outside the outbox)."""
        content = {"msgtype": "m.notice", "body": text}
        self.outgoing.relate(content, thread)
        self.tasks.spawn(
            self.outgoing.send_paced(thread.chat_id, "m.room.message", content, txn()),
            name=f"matrix-notice-{thread.chat_id}",
        )

    async def _deliver(self, event: Inbound) -> None:
        if self._sink is None:
            return
        try:
            await self._sink(event)
        except Exception:
            log.exception("the bridge failed on an inbound Matrix event")

    # --- threads ----------------------------------------------------------------------

    async def open_thread(
        self,
        chat_id: str,
        title: str,
        header: Outbound,
        *,
        prefer_topic: bool = True,
        on_created: Callable[[ThreadRef], None] | None = None,
    ) -> tuple[ThreadRef, str | None]:
        # The header is the thread's root: there is no thread before it (on_created unused).
        parts = self.render(header)
        first = parts[0].payload
        if "content" in first:
            name = " ".join(title.split())[:200] or "session"
            content = dict(first["content"])
            content["body"] = f"{name}\n\n{content['body']}"
            content["formatted_body"] = (
                f"<p><strong>{escape(name)}</strong></p>\n{content['formatted_body']}"
            )
            parts[0] = Rendered({**first, "content": content})
        header_id = await self.send(ThreadRef(self.platform, chat_id), parts[0])
        thread = (
            ThreadRef(self.platform, chat_id, header_id)
            if prefer_topic
            else ThreadRef.reply_chain(self.platform, chat_id, header_id)
        )
        for part in parts[1:]:
            await self.send(thread, part)
        return thread, header_id

    def thread_link(self, thread: ThreadRef) -> str | None:
        target = thread.root or ""
        link = f"https://matrix.to/#/{quote(thread.chat_id, safe='')}"
        return f"{link}/{quote(target, safe='')}" if target else link

    def default_chat(self, origin: ThreadRef) -> str:
        return self.config.room or origin.chat_id

    # --- outgoing ---------------------------------------------------------------------

    def render(self, msg: Outbound) -> list[Rendered]:
        return mx_render.render(msg, self.owners)

    def render_edit(self, msg: Outbound) -> Rendered:
        return mx_render.render_edit(msg, self.owners)

    async def send(self, thread: ThreadRef, msg: Rendered) -> str:
        return await self.outgoing.send(thread, msg)

    async def edit(self, thread: ThreadRef, message_id: str, msg: Rendered) -> None:
        await self.outgoing.edit(thread, message_id, msg)

    async def delete(self, thread: ThreadRef, message_id: str) -> None:
        await self.outgoing.delete(thread, message_id)
