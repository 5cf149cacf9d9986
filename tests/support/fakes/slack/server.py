"""The fake Slack server: one workspace with one app, its lifecycle (an aiohttp app on
127.0.0.1), the world the test sets up (users, channels, DMs), the HTTP plumbing of
`/api/<method>` (parameters, tokens, errors), and `FakeSlack` itself, composed of the
concerns in the sibling modules."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import secrets
import time
from collections.abc import Iterable
from typing import Any

import aiohttp
from aiohttp import web

from ..ratelimit import SlidingWindow, TokenBucket
from .deliveries import DeliveriesMixin
from .errors import ApiError
from .faults import Fault, FaultsMixin
from .limits import LimitsMixin, RateLimits
from .person import PersonMixin
from .state import (
    _SCOPE_OF,
    BOT_NAME,
    BOT_USER,
    DEFAULT_SCOPES,
    TEAM_ID,
    ApiCall,
    Channel,
    Conn,
    Delivery,
    Ephemeral,
    FakeFile,
    FakeMessage,
    StatusCall,
)
from .webapi import WebApiMixin


class FakeSlack(PersonMixin, WebApiMixin, DeliveriesMixin, LimitsMixin, FaultsMixin):
    """One workspace with one app (bot).  ``start()`` binds 127.0.0.1 on a free port."""

    MAX_BLOCK_TEXT = 12_000
    MAX_TEXT = 40_000
    MAX_STREAM_CALL = 12_000

    def __init__(
        self,
        *,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        streaming: bool = True,
        ack_timeout: float = 3.0,
        retry_delays: tuple[float, ...] = (0.0, 1.0, 5.0),
        stream_lifetime: float = 300.0,
        disconnect_grace: float = 2.0,
    ) -> None:
        self.bot_token = "xoxb-" + secrets.token_hex(12)
        self.app_token = "xapp-1-" + secrets.token_hex(12)
        self.signing_secret = secrets.token_hex(16)
        self.scopes = list(scopes)
        self.streaming = streaming
        self.ack_timeout = ack_timeout
        self.retry_delays = retry_delays
        self.stream_lifetime = stream_lifetime
        self.disconnect_grace = disconnect_grace
        self.rate_limits = RateLimits()
        self.channels: dict[str, Channel] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.transcript: list[FakeMessage] = []
        self.ephemerals_log: list[Ephemeral] = []
        self.statuses: list[StatusCall] = []
        self.files: dict[str, FakeFile] = {}
        self.calls: list[ApiCall] = []
        self.downloads: list[str] = []  # ids of files fetched with the bot token
        self.deliveries: list[Delivery] = []
        self.count_429 = 0
        self.hello_count = 0
        self.request_url: str | None = None
        self._faults: list[Fault] = []
        self._outage = False
        self._lost_acks = 0
        self._seq = itertools.count(1)
        self._epoch = int(time.time())
        self._tickets: set[str] = set()
        self._conns: list[Conn] = []
        self._conn_ids = itertools.count(1)
        self._pending: dict[str, Delivery] = {}  # envelope id → unacked socket delivery
        self._queue: asyncio.Queue[Delivery] | None = None
        self._changed = asyncio.Event()
        self._buckets: dict[str, TokenBucket] = {}
        self._windows: dict[str, SlidingWindow] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""
        self.add_user(BOT_USER, BOT_NAME, is_bot=True)

    # --- lifecycle ------------------------------------------------------------

    async def start(self) -> FakeSlack:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/upload/{file_id}", self._handle_upload)
        app.router.add_get("/files/{file_id}/{name}", self._handle_download)
        app.router.add_get("/link/", self._handle_ws)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._session = aiohttp.ClientSession()
        self._queue = asyncio.Queue()
        self._spawn(self._dispatcher())
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for conn in list(self._conns):
            await conn.ws.close()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/"

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _fire(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # --- the world --------------------------------------------------------------

    def add_user(
        self, user_id: str, name: str, *, real_name: str = "", is_bot: bool = False
    ) -> str:
        self.users[user_id] = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name.lower(),
            "real_name": real_name or name,
            "is_bot": is_bot,
            "deleted": False,
            "profile": {"display_name": name, "real_name": real_name or name},
        }
        return user_id

    def add_channel(
        self,
        channel_id: str,
        name: str,
        *,
        members: Iterable[str] = (),
        private: bool = False,
        bot_member: bool = True,
    ) -> str:
        people = set(members) | ({BOT_USER} if bot_member else set())
        self.channels[channel_id] = Channel(channel_id, name, people, is_private=private)
        return channel_id

    def add_dm(self, user_id: str, channel_id: str | None = None) -> str:
        cid = channel_id or "D" + user_id[1:]
        self.channels[cid] = Channel(cid, "", {user_id, BOT_USER}, is_im=True, im_user=user_id)
        return cid

    # --- Web API -------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.method != "POST" or not request.can_read_body:
            return params
        if request.content_type == "application/json":
            with contextlib.suppress(ValueError):
                body = await request.json()
                if isinstance(body, dict):
                    params.update(body)
        else:
            post = await request.post()
            params.update({k: v for k, v in post.items() if isinstance(v, str)})
        return params

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params = await self._params(request)
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else str(params.pop("token", "") or "")
        params.pop("token", None)
        call = ApiCall(method, params, time.time())
        self.calls.append(call)
        headers = {"x-oauth-scopes": ",".join(self.scopes)} if token == self.bot_token else {}
        try:
            if self._outage:
                raise ApiError("service_unavailable", status=503)
            fault = self._take_fault(method, params)
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.drop and request.transport is not None:
                    request.transport.abort()
                    return web.Response(status=500)
                extra = {"retry_after": fault.retry_after} if fault.retry_after else {}
                raise ApiError(fault.error, status=fault.status, **extra)
            self._auth(method, token)
            handler = getattr(self, "_api_" + method.replace(".", "_"), None)
            if handler is None:
                raise ApiError("unknown_method")
            scope = _SCOPE_OF.get(method)
            if scope and scope not in self.scopes:
                raise ApiError("missing_scope", needed=scope, provided=",".join(self.scopes))
            commit = self._check_rate(method, params)
            result = await handler(params)
            commit()
        except ApiError as e:
            call.error, call.status = e.error, e.status
            return self._error(e, headers)
        self._fire()
        return web.json_response({"ok": True, **result}, headers=headers)

    def _error(self, e: ApiError, headers: dict[str, str]) -> web.Response:
        if e.status == 429:
            self.count_429 += 1
            retry = max(1, math.ceil(float(e.extra.get("retry_after") or 1)))
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={**headers, "Retry-After": str(retry)},
            )
        if e.status >= 500:
            return web.Response(status=e.status, text="upstream error", content_type="text/html")
        extra = {k: v for k, v in e.extra.items() if k != "retry_after"}
        return web.json_response({"ok": False, "error": e.error, **extra}, headers=headers)

    def _auth(self, method: str, token: str) -> None:
        if not token:
            raise ApiError("not_authed")
        if method == "apps.connections.open":
            if token == self.bot_token:
                raise ApiError("not_allowed_token_type")
            if token != self.app_token:
                raise ApiError("invalid_auth")
        elif token != self.bot_token:
            raise ApiError("invalid_auth")
