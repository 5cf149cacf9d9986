"""Events, interactions and slash commands on their way to the app: over Socket Mode
(hello, envelopes, acks, redelivery, refresh) or signed HTTP (with retries)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.parse
from typing import Any

import aiohttp
from aiohttp import web

from .state import APP_ID, Conn, Delivery, Kind

log = logging.getLogger("tests.support.fakes.slack")



class DeliveriesMixin:
    """Socket Mode and HTTP delivery of a `FakeSlack`."""

    # --- deliveries: Socket Mode and HTTP --------------------------------------------

    def set_request_url(self, url: str | None) -> None:
        """HTTP mode: deliver to `url` (Request URL for events, interactivity and
        slash commands); None: back to Socket Mode."""
        self.request_url = url

    def _send(self, kind: Kind, payload: dict[str, Any]) -> Delivery:
        d = Delivery(secrets.token_hex(8), kind, payload)
        self.deliveries.append(d)
        assert self._queue is not None, "FakeSlack is not started"
        self._queue.put_nowait(d)
        return d

    async def _dispatcher(self) -> None:
        assert self._queue is not None
        while True:
            d = await self._queue.get()
            try:
                if self.request_url:
                    self._spawn(self._deliver_http(d))
                else:
                    await self._deliver_socket(d)
            except Exception:  # a broken connection: the retry logic takes over
                log.exception("fake slack: delivery %s failed", d.id)

    def _retry(self, d: Delivery, reason: str) -> None:
        """An unacknowledged delivery: events are retried (3 times), the rest fail."""
        if d.acked.is_set() or d.failed:
            return
        self._pending.pop(d.id, None)
        if d.kind != "events_api" or d.attempt >= len(self.retry_delays):
            d.failed = True
            d.log.append(f"failed: {reason}")
            self._fire()
            return
        delay = self.retry_delays[d.attempt]
        d.attempt += 1
        d.retry_reason = reason
        d.log.append(f"retry {d.attempt} in {delay} s: {reason}")
        assert self._queue is not None
        queue = self._queue
        asyncio.get_running_loop().call_later(delay, queue.put_nowait, d)

    async def _deliver_socket(self, d: Delivery) -> None:
        conn = await self._active_conn()
        envelope: dict[str, Any] = {
            "envelope_id": d.id,
            "type": d.kind,
            "payload": d.payload,
            "accepts_response_payload": d.kind != "events_api",
        }
        if d.kind == "events_api":
            envelope["retry_attempt"] = d.attempt
            envelope["retry_reason"] = d.retry_reason
        d.conn = conn.id
        d.sent_at = time.monotonic()
        self._pending[d.id] = d
        d.log.append(f"sent on connection {conn.id}")
        loop = asyncio.get_running_loop()
        d.timer = loop.call_later(self.ack_timeout, self._retry, d, "timeout")
        await conn.ws.send_json(envelope)

    async def _active_conn(self) -> Conn:
        while True:
            live = [c for c in self._conns if not c.draining and not c.ws.closed]
            if live:
                return live[-1]
            await self.wait_until(
                lambda: any(not c.draining and not c.ws.closed for c in self._conns), 3600
            )

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = Conn(next(self._conn_ids), ws)
        self._conns.append(conn)
        self.hello_count += 1
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._conns),
                "debug_info": {"host": "applink-fake", "approximate_connection_time": 18060},
                "connection_info": {"app_id": APP_ID},
            }
        )
        self._fire()
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                with contextlib.suppress(ValueError):
                    data = json.loads(message.data)
                    if isinstance(data, dict) and data.get("envelope_id"):
                        self._ack(str(data["envelope_id"]), data.get("payload"))
        finally:
            self._conns.remove(conn)
            for d in [d for d in self._pending.values() if d.conn == conn.id]:
                if d.timer is not None:
                    d.timer.cancel()
                self._retry(d, "connection_closed")
            self._fire()
        return ws

    def _ack(self, envelope_id: str, payload: Any) -> None:
        d = self._pending.pop(envelope_id, None)
        if d is None:
            return
        if self._lost_acks > 0:
            self._lost_acks -= 1
            self._pending[envelope_id] = d  # the timer retries it
            d.log.append("ack lost")
            return
        if d.timer is not None:
            d.timer.cancel()
        d.ack_payload = payload
        d.log.append("acked")
        d.acked_at = time.monotonic()
        d.acked.set()
        self._fire()

    async def refresh(self, reason: str = "refresh_requested") -> None:
        """Ask the app to reconnect: a ``disconnect`` on every live connection, which
        then gets no new envelopes and is closed after `disconnect_grace` s."""
        for conn in [c for c in self._conns if not c.draining]:
            conn.draining = True
            await conn.ws.send_json(
                {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
            )
            self._spawn(self._close_later(conn))

    async def _close_later(self, conn: Conn) -> None:
        await asyncio.sleep(self.disconnect_grace)
        await conn.ws.close()

    @property
    def connections(self) -> int:
        return len([c for c in self._conns if not c.ws.closed])

    def sign(self, body: str, timestamp: str) -> str:
        base = f"v0:{timestamp}:{body}".encode()
        return "v0=" + hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()

    def _http_body(self, d: Delivery) -> tuple[str, str]:
        if d.kind == "events_api":
            return json.dumps(d.payload), "application/json"
        if d.kind == "interactive":
            return urllib.parse.urlencode(
                {"payload": json.dumps(d.payload)}
            ), "application/x-www-form-urlencoded"
        return urllib.parse.urlencode(d.payload), "application/x-www-form-urlencoded"

    async def deliver_raw(
        self,
        body: str,
        *,
        content_type: str = "application/json",
        timestamp: str | None = None,
        signature: str | None = None,
        retry_num: int | None = None,
    ) -> tuple[int, str]:
        """POST `body` to the request URL, signed correctly unless told otherwise."""
        assert self.request_url and self._session is not None
        ts = timestamp or str(int(time.time()))
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature or self.sign(body, ts),
        }
        if retry_num:
            headers.update(
                {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
            )
        async with self._session.post(self.request_url, data=body.encode(), headers=headers) as r:
            return r.status, await r.text()

    async def _deliver_http(self, d: Delivery) -> None:
        body, ctype = self._http_body(d)
        d.log.append(f"POST attempt {d.attempt}")
        d.sent_at = time.monotonic()
        try:
            status, text = await asyncio.wait_for(
                self.deliver_raw(body, content_type=ctype, retry_num=d.attempt or None),
                self.ack_timeout,
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            self._retry(d, "http_timeout" if isinstance(e, TimeoutError) else "http_error")
            return
        if self._lost_acks > 0:
            self._lost_acks -= 1
            d.log.append(f"answer {status} lost")
            self._retry(d, "http_timeout")
            return
        if not 200 <= status < 300:
            self._retry(d, "http_error")
            return
        with contextlib.suppress(ValueError):
            d.ack_payload = json.loads(text) if text else None
        d.log.append(f"acked {status}")
        d.acked_at = time.monotonic()
        d.acked.set()
        self._fire()
