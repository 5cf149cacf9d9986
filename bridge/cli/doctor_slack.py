"""`threadline doctor`, the Slack part: are the tokens good, does the app have every
scope the manifest asks for, can it open a Socket Mode connection (or verify HTTP
requests), is it in the configured channel, and is there a Slack owner.

`check_slack(cfg, out)` prints one line per check (ok / FAIL with the fix / warn) in
the style of `bridge.cli.doctor` and returns the number of failures.  The scopes a token
really has come from the ``x-oauth-scopes`` header Slack puts on every Web API answer;
the scopes it should have from ``adapters/slack/manifest.yaml``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp
from rich.console import Console
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.client import header_scopes, manifest_scopes, web_client
from adapters.slack.errors import error_code
from bridge.cli.doctor_out import _fail, _ok, _warn
from bridge.config import Config

T = TypeVar("T")
MANIFEST = "adapters/slack/manifest.yaml"


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, also when called from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def check_slack(cfg: Config, out: Console) -> int:
    """Check the [slack] section against Slack; the number of failed checks."""
    if not cfg.slack.enabled:
        return 0
    return _run(_check(cfg, out))


async def _check(cfg: Config, out: Console) -> int:
    async with aiohttp.ClientSession() as session:
        client = web_client(cfg.slack, session)
        try:
            auth = await client.auth_test()
        except SlackApiError as e:
            code = error_code(e) or f"HTTP {e.response.status_code}"
            _fail(
                out,
                f"Slack: auth.test failed ({code})",
                "copy OAuth & Permissions → Bot User OAuth Token (xoxb-…) into [slack] bot_token",
            )
            return 1
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            _fail(
                out,
                f"Slack: cannot reach the Web API ({type(e).__name__})",
                "check the network and [slack] base_url",
            )
            return 1
        _ok(out, f"Slack bot @{auth.get('user')} in {auth.get('team')}")
        failures = _scopes(out, header_scopes(auth.headers))
        failures += await _transport(cfg, client, out)
        failures += await _channel(cfg, client, out)
    from bridge.cli.daemon import all_owners

    if not any(o.startswith("slack:") for o in all_owners(cfg)):
        failures += 1
        _fail(
            out,
            "Slack: no slack owner in [access] owners and none paired",
            "run `threadline pair`, or add 'slack:<your member id>' (Slack profile → ⋮ → Copy member ID)",
        )
    return failures


def _scopes(out: Console, granted: set[str]) -> int:
    missing = [s for s in manifest_scopes() if s not in granted]
    if not missing:
        _ok(out, "Slack: the bot token has every scope the manifest asks for")
        return 0
    _fail(
        out,
        f"Slack: the bot token lacks scope{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
        f"add them under OAuth & Permissions → Scopes (or paste {MANIFEST} again), then reinstall the app",
    )
    return 1


async def _transport(cfg: Config, client: AsyncWebClient, out: Console) -> int:
    if cfg.slack.mode == "http":
        if cfg.slack.signing_secret:
            _ok(out, f"Slack: HTTP mode on 127.0.0.1:{cfg.slack.http_port}/slack/events")
            return 0
        _fail(
            out,
            "Slack: HTTP mode needs a signing secret",
            "copy Basic Information → Signing Secret into [slack] signing_secret",
        )
        return 1
    try:
        await client.apps_connections_open(app_token=cfg.slack.app_token)
    except SlackApiError as e:
        _fail(
            out,
            f"Slack: Socket Mode refused the app token ({error_code(e) or e.response.status_code})",
            "Basic Information → App-Level Tokens → one with connections:write → [slack] app_token (xapp-…); and turn Socket Mode on",
        )
        return 1
    _ok(out, "Slack: Socket Mode connection allowed (no public URL needed)")
    return 0


async def _channel(cfg: Config, client: AsyncWebClient, out: Console) -> int:
    channel = cfg.slack.channel
    if not channel:
        _warn(
            out,
            "Slack: no [slack] channel",
            "sessions will open where `new` is typed; set a channel id (C…) to keep them together",
        )
        return 0
    try:
        info = (await client.conversations_info(channel=channel)).get("channel") or {}
    except SlackApiError as e:
        _fail(
            out,
            f"Slack: channel {channel} not usable ({error_code(e)})",
            "check [slack] channel (a C… id) and invite the app to it",
        )
        return 1
    if not info.get("is_member"):
        _fail(
            out,
            f"Slack: the app is not in #{info.get('name') or channel}",
            "invite it: /invite @threadline in that channel",
        )
        return 1
    _ok(out, f"Slack: sessions open as threads in #{info.get('name') or channel}")
    return 0
