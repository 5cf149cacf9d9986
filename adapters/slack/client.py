"""Building and running the slack-bolt app the adapter sits on.

One place for the transport: the `AsyncWebClient` (the configured Web API base URL,
one shared aiohttp session, no automatic 429 retries — the outbox owns pacing),
the Bolt `AsyncApp` (signature verification on in HTTP mode), the two ways events
arrive — Socket Mode (`AsyncSocketModeHandler`; the app token is checked with
``apps.connections.open`` before connecting, so a bad token fails `start()` instead
of retrying forever) and HTTP mode (Bolt's aiohttp adapter at ``/slack/events`` on
127.0.0.1) — downloading files people share (``url_private_download`` with the bot
token; lazily, when the bridge asks after its access check, streamed within a cap), and reading the bot scopes out of ``manifest.yaml`` for `threadline doctor`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from adapters import download
from adapters.download import FileRef, get_capped
from adapters.messages import Attachment, AttachmentUnavailable
from adapters.slack.config import SlackConfig
from adapters.slack.errors import SlackErrors

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://slack.com/api/"
EVENTS_PATH = "/slack/events"
MANIFEST = Path(__file__).with_name("manifest.yaml")
CONNECT_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 20  # a Web API call not answered by then fails (the outbox retries it)
ANY = re.compile(".*")  # Bolt listener constraint that matches everything


def web_client(config: SlackConfig, session: aiohttp.ClientSession) -> AsyncWebClient:
    base = config.base_url or DEFAULT_BASE_URL
    return AsyncWebClient(
        token=config.bot_token,
        base_url=base if base.endswith("/") else base + "/",
        session=session,
        timeout=REQUEST_TIMEOUT_S,
        logger=logging.getLogger("adapters.slack.web"),
    )


def build_app(config: SlackConfig, client: AsyncWebClient) -> AsyncApp:
    return AsyncApp(
        client=client,
        signing_secret=config.signing_secret,
        name="threadline",
        logger=logging.getLogger("adapters.slack.bolt"),
        process_before_response=False,
    )


class SocketModeRunner:
    """Socket Mode: a WebSocket from us to Slack, no public URL needed."""

    def __init__(self, app: AsyncApp, app_token: str, client: AsyncWebClient, errors: SlackErrors):
        self._app, self._token, self._client, self._errors = app, app_token, client, errors
        self._handler: AsyncSocketModeHandler | None = None

    async def start(self) -> None:
        opened = await self._errors.call(
            lambda: self._client.apps_connections_open(app_token=self._token)
        )
        self._handler = AsyncSocketModeHandler(
            self._app, self._token, web_client=self._client, ping_interval=10
        )
        self._handler.client.wss_uri = str(opened["url"])
        connect = self._handler.connect_async()  # type: ignore[no-untyped-call]
        await asyncio.wait_for(connect, CONNECT_TIMEOUT_S)

    async def stop(self) -> None:
        handler, self._handler = self._handler, None
        if handler is not None:
            await handler.close_async()  # type: ignore[no-untyped-call]


class HttpRunner:
    """HTTP mode: Slack POSTs events, interactivity and slash commands to us; Bolt
    verifies each request's signature and timestamp before anything else."""

    def __init__(self, app: AsyncApp, port: int, host: str = "127.0.0.1") -> None:
        self._app, self._port, self._host = app, port, host
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        bolt_request = await to_bolt_request(request)
        return await to_aiohttp_response(await self._app.async_dispatch(bolt_request))

    async def start(self) -> None:
        web_app = web.Application(client_max_size=16 * 1024 * 1024)
        web_app.router.add_post(EVENTS_PATH, self._handle)
        self._runner = web.AppRunner(web_app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()

    @property
    def port(self) -> int:
        return int(self._runner.addresses[0][1]) if self._runner else self._port

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


def file_host_allowed(url: str, api_base: str = "") -> bool:
    """Whether a file URL from an event may be fetched with the bot token: only from
    Slack (https, `slack.com` or a subdomain) or the configured API's own host (a
    local test server).  A URL pointing elsewhere would hand the token to its host."""
    u = urlsplit(url)
    host = (u.hostname or "").lower()
    if u.scheme == "https" and (host == "slack.com" or host.endswith(".slack.com")):
        return True
    base = urlsplit(api_base) if api_base else None
    return (
        base is not None
        and bool(host)
        and (u.scheme, host, u.port)
        == (
            base.scheme,
            (base.hostname or "").lower(),
            base.port,
        )
    )


def attachment(
    session: aiohttp.ClientSession,
    token: str,
    ref: FileRef,
    redact: Callable[[str], str],
    api_base: str = "",
) -> Attachment:
    """The bridge's lazy `Attachment` for a shared file: nothing is fetched until the
    bridge calls `fetch(limit)` (after its access check); then the file is streamed
    with the bot token in the header and abandoned past the cap.  A URL that is not
    Slack's (or the configured API host's) is never fetched: it would hand the token
    to its host."""

    def precheck() -> None:
        if not file_host_allowed(ref.source, api_base):
            log.warning("not fetching %s: its URL is not Slack's", ref.name)
            raise AttachmentUnavailable("not a Slack file URL")

    async def body(cap: int) -> bytes:
        try:
            return await get_capped(
                session, ref.source, token=token, name=ref.name, limit=cap, what="file download"
            )
        except (aiohttp.ClientError, OSError) as e:
            raise AttachmentUnavailable(redact(str(e))) from None

    return download.attachment(ref, body, precheck=precheck)


def manifest_scopes(path: Path = MANIFEST) -> list[str]:
    """The bot scopes the app manifest asks for (``oauth_config.scopes.bot``).

    A reader for the small YAML subset the manifest uses (no PyYAML dependency):
    nested mappings by indentation and ``- item`` lists."""
    stack: list[tuple[int, str]] = []
    scopes: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        text = line.strip()
        while stack and stack[-1][0] >= indent and not text.startswith("- "):
            stack.pop()
        if text.startswith("- "):
            if [k for _, k in stack][-3:] == ["oauth_config", "scopes", "bot"]:
                scopes.append(text[2:].strip().strip("'\""))
        elif text.endswith(":"):
            stack.append((indent, text[:-1].strip()))
    return scopes


def header_scopes(headers: Any) -> set[str]:
    """The scopes a token has, from a Web API answer's ``x-oauth-scopes`` header."""
    raw = ""
    if headers is not None:
        raw = headers.get("x-oauth-scopes") or headers.get("X-OAuth-Scopes") or ""
        if isinstance(raw, list):
            raw = ",".join(raw)
    return {s.strip() for s in str(raw).split(",") if s.strip()}
