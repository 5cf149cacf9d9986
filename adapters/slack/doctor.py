"""`threadline doctor`, the Slack part: are the tokens good, does the app have every
scope the manifest asks for, can it open a Socket Mode connection (or verify HTTP
requests), is it in the configured channel, and is there a Slack owner.

`check(cfg, owners)` returns one result per check (ok / fail with the fix / warn);
`bridge.cli.doctor` prints them.  The scopes a token
really has come from the ``x-oauth-scopes`` header Slack puts on every Web API answer;
the scopes it should have from ``adapters/slack/manifest.yaml``.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.client import header_scopes, manifest_scopes, web_client
from adapters.slack.config import SlackConfig
from adapters.slack.errors import error_code
from adapters.spec import CheckResult, fail, ok, warn

MANIFEST = "adapters/slack/manifest.yaml"


async def check(cfg: SlackConfig, owners: Sequence[str]) -> list[CheckResult]:
    """Check the [slack] section against Slack."""
    results: list[CheckResult] = []
    async with aiohttp.ClientSession() as session:
        client = web_client(cfg, session)
        try:
            auth = await client.auth_test()
        except SlackApiError as e:
            code = error_code(e) or f"HTTP {e.response.status_code}"
            return [
                fail(
                    f"Slack: auth.test failed ({code})",
                    "copy OAuth & Permissions → Bot User OAuth Token (xoxb-…) into [slack] bot_token",
                )
            ]
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            return [
                fail(
                    f"Slack: cannot reach the Web API ({type(e).__name__})",
                    "check the network and [slack] base_url",
                )
            ]
        results.append(ok(f"Slack bot @{auth.get('user')} in {auth.get('team')}"))
        results.append(_scopes(header_scopes(auth.headers)))
        results.append(await _transport(cfg, client))
        results.append(await _channel(cfg, client))
    if not any(o.startswith("slack:") for o in owners):
        results.append(
            fail(
                "Slack: no slack owner in [access] owners and none paired",
                "run `threadline pair`, or add 'slack:<your member id>' (Slack profile → ⋮ → Copy member ID)",
            )
        )
    return results


def _scopes(granted: set[str]) -> CheckResult:
    missing = [s for s in manifest_scopes() if s not in granted]
    if not missing:
        return ok("Slack: the bot token has every scope the manifest asks for")
    return fail(
        f"Slack: the bot token lacks scope{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
        f"add them under OAuth & Permissions → Scopes (or paste {MANIFEST} again), then reinstall the app",
    )


async def _transport(cfg: SlackConfig, client: AsyncWebClient) -> CheckResult:
    if cfg.mode == "http":
        if cfg.signing_secret:
            return ok(f"Slack: HTTP mode on 127.0.0.1:{cfg.http_port}/slack/events")
        return fail(
            "Slack: HTTP mode needs a signing secret",
            "copy Basic Information → Signing Secret into [slack] signing_secret",
        )
    try:
        await client.apps_connections_open(app_token=cfg.app_token)
    except SlackApiError as e:
        return fail(
            f"Slack: Socket Mode refused the app token ({error_code(e) or e.response.status_code})",
            "Basic Information → App-Level Tokens → one with connections:write → [slack] app_token (xapp-…); and turn Socket Mode on",
        )
    return ok("Slack: Socket Mode connection allowed (no public URL needed)")


async def _channel(cfg: SlackConfig, client: AsyncWebClient) -> CheckResult:
    channel = cfg.channel
    if not channel:
        return warn(
            "Slack: no [slack] channel",
            "sessions will open where `new` is typed; set a channel id (C…) to keep them together",
        )
    try:
        info = (await client.conversations_info(channel=channel)).get("channel") or {}
    except SlackApiError as e:
        return fail(
            f"Slack: channel {channel} not usable ({error_code(e)})",
            "check [slack] channel (a C… id) and invite the app to it",
        )
    if not info.get("is_member"):
        return fail(
            f"Slack: the app is not in #{info.get('name') or channel}",
            "invite it: /invite @threadline in that channel",
        )
    return ok(f"Slack: sessions open as threads in #{info.get('name') or channel}")
