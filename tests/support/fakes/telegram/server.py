"""The fake Bot API server: its state, lifecycle (an aiohttp app on 127.0.0.1), the HTTP
plumbing of `/bot<token>/<method>` and `/file/bot<token>/<path>`, and `FakeTelegram`
itself, composed of the concerns in the sibling modules."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from ..ratelimit import SlidingWindow, TokenBucket
from .chats import ChatsMixin
from .errors import DEFAULT_DESCRIPTIONS, ApiError
from .faults import Fault, FaultsMixin
from .limits import UPLOAD_LIMIT, LimitsMixin, RateLimits
from .messages import MessagesMixin
from .person import PersonMixin
from .state import (
    ApiCall,
    CallbackQueryRecord,
    ChatAction,
    ChatRecord,
    Draft,
    FileRecord,
    WebhookDelivery,
    _Signal,
)
from .updates import UpdatesMixin
from .wire import CANONICAL, METHODS, read_params

log = logging.getLogger("tests.support.fakes.telegram")


class FakeTelegram(PersonMixin, MessagesMixin, ChatsMixin, UpdatesMixin, LimitsMixin, FaultsMixin):
    """A fake Bot API server; see the package docstring.  Use as ``async with``."""

    def __init__(
        self,
        token: str = "123456789:TEST-threadline-token",
        *,
        bot_username: str = "threadline_test_bot",
        bot_first_name: str = "Threadline",
        has_topics_enabled: bool = False,
        rate_limits: RateLimits | None = None,
        strict_ampersand: bool = True,
        callback_query_ttl: float | None = 15.0,
        reject_closed_topics: bool = False,
        webhook_retry_delay: float = 0.5,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 1
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.has_topics_enabled = has_topics_enabled
        self.rate_limits = rate_limits or RateLimits()
        self.strict_ampersand = strict_ampersand
        self.callback_query_ttl = callback_query_ttl
        self.reject_closed_topics = reject_closed_topics
        self.webhook_retry_delay = webhook_retry_delay
        self.clock: Callable[[], float] = time.monotonic
        self._host, self._port = host, port

        # observable state
        self.calls: Counter[str] = Counter()
        # (the host name the client used to reach us, method): tells apart clients
        # given different base URLs (127.0.0.1 / localhost) — e.g. two daemons.
        self.calls_via: Counter[tuple[str, str]] = Counter()
        self.count_429 = 0
        self.api_log: list[ApiCall] = []
        self.unknown_methods: list[str] = []
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.reactions: list[dict[str, Any]] = []
        self.file_downloads: list[str] = []  # file paths requested from /file/bot…
        self.hold_files: asyncio.Event | None = None  # unset: file answers wait for it

        self._chats: dict[int, ChatRecord] = {}
        self._drafts: list[Draft] = []
        self._actions: list[ChatAction] = []
        self._files: dict[str, FileRecord] = {}
        self._files_by_path: dict[str, FileRecord] = {}
        self._commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._callbacks: dict[str, CallbackQueryRecord] = {}
        self._faults: list[Fault] = []
        self._outage: int | str | None = None
        # A test's hook, called ("received" | "applied", method, params) when a call
        # arrives and after it took effect (before the answer is written): e.g. to
        # kill the client at an exact point.
        self.on_api: Callable[[str, str, dict[str, Any]], None] | None = None

        self._updates: deque[dict[str, Any]] = deque()
        self._update_ids = itertools.count(100_000)
        self._cq_ids = itertools.count(4_200_000_000_000_000_001)
        self._file_ids = itertools.count(1)
        self._allowed_updates: list[str] | None = None
        self._poller: asyncio.Future[None] | None = None
        self._webhook: dict[str, Any] | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._webhook_last_error: tuple[int, str] | None = None

        self._chat_buckets: dict[int, TokenBucket] = {}
        self._draft_buckets: dict[int, TokenBucket] = {}
        self._group_windows: dict[int, SlidingWindow] = {}
        self._global_bucket: TokenBucket | None = None

        self._changed = _Signal()
        self._new_update = _Signal()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._session: aiohttp.ClientSession | None = None

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> FakeTelegram:
        app = web.Application(client_max_size=UPLOAD_LIMIT + 10 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self._host, self._port)
        await self._site.start()
        sock = self._site._server.sockets[0]  # type: ignore[union-attr]
        self._port = sock.getsockname()[1]
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self

    async def stop(self) -> None:
        self._closing = True
        self._new_update.fire()
        self._changed.fire()
        if self._poller is not None and not self._poller.done():
            self._poller.set_result(None)
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._webhook_task
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._site = None

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def base_url(self) -> str:
        """For ``Application.builder().base_url(...)`` / ``Bot(base_url=...)``."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.url}/file/bot"

    def bot(self, token: str | None = None) -> Any:
        """A plain ``telegram.Bot`` pointed at this fake (not yet initialized)."""
        from telegram import Bot

        return Bot(token or self.token, base_url=self.base_url, base_file_url=self.base_file_url)

    def app_builder(self, token: str | None = None) -> Any:
        """``Application.builder()`` with token, base_url and base_file_url preset."""
        from telegram.ext import Application

        return (
            Application.builder()
            .token(token or self.token)
            .base_url(self.base_url)
            .base_file_url(self.base_file_url)
        )

    def bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    # ---------------------------------------------------------------- HTTP plumbing
    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        if self._outage == "refused":
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=503)
        token = request.match_info["token"]
        raw_method = request.match_info["method"]
        method = CANONICAL.get(raw_method.lower(), raw_method)
        try:
            params, files = await read_params(request)
        except ApiError as exc:
            return self._error_response(method, {}, {}, exc)
        self.calls[method] += 1
        self.calls_via[(request.url.host or "", method)] += 1
        if isinstance(self._outage, int):
            return self._error_response(
                method,
                params,
                files,
                ApiError(self._outage, DEFAULT_DESCRIPTIONS.get(self._outage, "Bad Gateway")),
            )
        if token != self.token:
            return self._error_response(method, params, files, ApiError(401, "Unauthorized"))
        handler = getattr(self, f"_api_{method.lower()}", None) if method in METHODS else None
        if handler is None:
            self.unknown_methods.append(raw_method)
            log.warning("fake telegram: unknown method %s", raw_method)
            return self._error_response(method, params, files, ApiError(404, "Not Found"))

        if self.on_api is not None:
            self.on_api("received", method, params)
        fault = self._take_fault(method, params)
        try:
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.status is not None or fault.reset:
                    if fault.applied:
                        with contextlib.suppress(ApiError):
                            commit = self._check_rate(method, params)
                            await handler(params, files)
                            commit()
                    if fault.reset and request.transport is not None:
                        request.transport.abort()
                        return web.Response(status=500)
                    raise ApiError(fault.status or 500, fault.description or "", fault.parameters)
            commit = self._check_rate(method, params)
            result = await handler(params, files)
            commit()
            if self.on_api is not None:
                self.on_api("applied", method, params)
        except ApiError as exc:
            return self._error_response(method, params, files, exc)
        finally:
            self._changed.fire()
        self.api_log.append(
            ApiCall(
                method, params, {k: len(v[1]) for k, v in files.items()}, 200, None, time.time()
            )
        )
        return web.json_response({"ok": True, "result": result})

    def _error_response(
        self,
        method: str,
        params: dict[str, Any],
        files: dict[str, tuple[str | None, bytes, str | None]],
        exc: ApiError,
    ) -> web.Response:
        if exc.code == 429:
            self.count_429 += 1
        self.api_log.append(
            ApiCall(
                method,
                params,
                {k: len(v[1]) for k, v in files.items()},
                exc.code,
                exc.description,
                time.time(),
            )
        )
        return web.json_response(exc.body(), status=exc.code)

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if self._outage == "refused":
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=503)
        if isinstance(self._outage, int):
            return web.Response(status=self._outage)
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        self.file_downloads.append(request.match_info["path"])
        self._changed.fire()
        rec = self._files_by_path.get(request.match_info["path"])
        if rec is None:
            return web.json_response(
                {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
            )
        if self.hold_files is not None:
            await self.hold_files.wait()
        return web.Response(body=rec.data, content_type=rec.mime_type or "application/octet-stream")
