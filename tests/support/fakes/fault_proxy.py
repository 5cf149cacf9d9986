"""A reverse proxy on 127.0.0.1 that breaks a real server's API on demand.

Put it between a client and a server the tests run for real (Synapse) and point the
client at ``proxy.base_url``; every request is forwarded unchanged (headers, body,
status, compressed bytes as they are) unless a fault rule takes it::

    proxy = await FaultProxy(synapse.base_url).start()
    proxy.fail(times=3, status=502, match=sends)        # a 5xx burst
    proxy.rate_limit(times=4, retry_after_ms=500)         # a 429 M_LIMIT_EXCEEDED storm
    proxy.hold(times=1, seconds=5)                        # hangs, then 504, never forwarded
    proxy.reset(times=1)                                  # connection reset, never forwarded
    proxy.lose(times=1, match=sends)                      # forwarded, the answer is lost
    await proxy.set_outage("refused")                     # port closed; None ends it

Rules apply to the next ``times`` matching requests, or to every matching request for
``seconds``; the oldest rule that matches wins. ``match(method, path)`` picks requests
(default: all). Every request is logged in ``proxy.log`` as ``(method, path, outcome)``
where the outcome is the status answered or the fault's name.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import aiohttp
from aiohttp import web

Match = Callable[[str, str], bool]
Kind = Literal["fail", "rate_limit", "hold", "reset", "lose"]
# Hop-by-hop headers and those aiohttp sets itself.
_SKIP_REQUEST = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}
_SKIP_RESPONSE = {"content-length", "transfer-encoding", "connection", "keep-alive"}


def _any(_method: str, _path: str) -> bool:
    return True


@dataclass
class Rule:
    kind: Kind
    times: int | None  # None: until `until`
    until: float | None  # time.monotonic() deadline, or None
    match: Match
    status: int = 500
    retry_after_ms: int = 1000
    hold_s: float = 0.0
    served: int = 0

    def live(self) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        return self.until is None or time.monotonic() < self.until


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules: list[Rule] = []
        self.log: list[tuple[str, str, str]] = []
        self._outage: int | Literal["refused"] | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> FaultProxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await self._site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- faults -----------------------------------------------------------------------

    def _add(
        self,
        kind: Kind,
        times: int | None,
        seconds: float | None,
        match: Match | None,
        *,
        status: int = 500,
        retry_after_ms: int = 1000,
        hold_s: float = 0.0,
    ) -> Rule:
        if times is None and seconds is None:
            raise ValueError("give times or seconds")
        until = time.monotonic() + seconds if seconds is not None else None
        rule = Rule(kind, times, until, match or _any, status, retry_after_ms, hold_s)
        self.rules.append(rule)
        return rule

    def fail(
        self,
        times: int | None = 1,
        *,
        status: int = 500,
        seconds: float | None = None,
        match: Match | None = None,
    ) -> Rule:
        """Answer HTTP ``status`` (a 5xx) without forwarding."""
        return self._add("fail", times, seconds, match, status=status)

    def rate_limit(
        self,
        times: int | None = 1,
        *,
        retry_after_ms: int = 1000,
        seconds: float | None = None,
        match: Match | None = None,
    ) -> Rule:
        """Answer 429 ``M_LIMIT_EXCEEDED`` with ``retry_after_ms``, as Synapse does."""
        return self._add("rate_limit", times, seconds, match, retry_after_ms=retry_after_ms)

    def hold(
        self,
        times: int | None = 1,
        *,
        for_s: float,
        seconds: float | None = None,
        match: Match | None = None,
    ) -> Rule:
        """Hold the request ``for_s`` seconds, then answer 504 (never forwarded)."""
        return self._add("hold", times, seconds, match, hold_s=for_s, status=504)

    def reset(
        self, times: int | None = 1, *, seconds: float | None = None, match: Match | None = None
    ) -> Rule:
        """Abort the connection without forwarding (a connection reset)."""
        return self._add("reset", times, seconds, match)

    def lose(
        self, times: int | None = 1, *, seconds: float | None = None, match: Match | None = None
    ) -> Rule:
        """Forward the request, then abort the connection: it took effect, the client
        never hears so (a lost response)."""
        return self._add("lose", times, seconds, match)

    def pending(self) -> list[Rule]:
        return [r for r in self.rules if r.live()]

    async def set_outage(self, mode: int | Literal["refused"] | None) -> None:
        """Every request answered with HTTP ``mode`` (e.g. 503), or ``"refused"``: the
        port is closed (connections refused, open ones cut); ``None`` ends the outage."""
        previous, self._outage = self._outage, mode
        assert self._runner is not None
        if mode == "refused" and previous != "refused":
            assert self._site is not None
            server = self._site._server
            if server is not None:
                server.close()
            for handler in list(self._runner.server.connections if self._runner.server else []):
                handler.force_close()
            await self._site.stop()
        elif previous == "refused" and mode != "refused":
            self._site = web.TCPSite(self._runner, "127.0.0.1", self._port, reuse_address=True)
            await self._site.start()

    # --- proxying ---------------------------------------------------------------------

    def _take(self, method: str, path: str) -> Rule | None:
        for rule in self.rules:
            if rule.live() and rule.match(method, path):
                rule.served += 1
                if rule.times is not None:
                    rule.times -= 1
                return rule
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, request.path
        if self._outage == "refused":
            if request.transport is not None:
                request.transport.abort()
            self.log.append((method, path, "refused"))
            return web.Response(status=503)
        if isinstance(self._outage, int):
            self.log.append((method, path, str(self._outage)))
            return web.Response(status=self._outage, text="upstream unavailable")
        rule = self._take(method, path)
        if rule is not None:
            self.log.append((method, path, rule.kind))
            if rule.kind == "fail":
                return _matrix_error(rule.status, "M_UNKNOWN", "injected server error")
            if rule.kind == "rate_limit":
                body = {
                    "errcode": "M_LIMIT_EXCEEDED",
                    "error": "Too Many Requests",
                    "retry_after_ms": rule.retry_after_ms,
                }
                return web.json_response(body, status=429)
            if rule.kind == "hold":
                await asyncio.sleep(rule.hold_s)
                return _matrix_error(504, "M_UNKNOWN", "gateway timeout")
            if rule.kind == "reset":
                return _abort(request)
        response = await self._forward(request)
        if rule is not None and rule.kind == "lose":
            return _abort(request)
        self.log.append((method, path, str(response.status)))
        return response

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIP_REQUEST}
        body = await request.read()
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as upstream:
            data = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _SKIP_RESPONSE}
            return web.Response(status=upstream.status, body=data, headers=out)


def _matrix_error(status: int, errcode: str, error: str) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps({"errcode": errcode, "error": error}),
        content_type="application/json",
    )


def _abort(request: web.Request) -> web.Response:
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)
