"""Bot identity, updates and commands: getMe, logOut/close, webhooks (set, info,
delivery with retries), getUpdates long polling, and the command menus."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from .errors import ApiError, bad_request
from .state import WebhookDelivery
from .wire import json_param, maybe_int, truthy


def scope_key(scope: Mapping[str, Any] | None) -> str:
    if not scope or scope.get("type") == "default":
        return "default"
    return json.dumps(dict(scope), sort_keys=True)


class UpdatesMixin:
    """getMe, webhooks, getUpdates and the command menus."""

    # ---------------------------------------------------------------- API methods
    async def _api_getme(self, p: dict[str, Any], f: Any) -> Any:
        return {
            **self.bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
            "has_topics_enabled": self.has_topics_enabled,
            "allows_users_to_create_topics": False,
        }

    async def _api_logout(self, p: dict[str, Any], f: Any) -> Any:
        return True

    async def _api_close(self, p: dict[str, Any], f: Any) -> Any:
        return True

    async def _api_deletewebhook(self, p: dict[str, Any], f: Any) -> Any:
        self._set_webhook(None)
        if truthy(p.get("drop_pending_updates")):
            self._updates.clear()
        return True

    async def _api_setwebhook(self, p: dict[str, Any], f: Any) -> Any:
        url = p.get("url") or ""
        secret = p.get("secret_token") or None
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise bad_request("secret token contains unallowed characters")
        if url and not re.match(r"https?://", url):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if truthy(p.get("drop_pending_updates")):
            self._updates.clear()
        allowed = (
            json_param(p["allowed_updates"], "allowed updates")
            if p.get("allowed_updates")
            else None
        )
        if allowed is not None:
            self._allowed_updates = list(allowed) or None
        if not url:
            self._set_webhook(None)
            return True
        self._set_webhook(
            {
                "url": url,
                "secret_token": secret,
                "max_connections": maybe_int(p.get("max_connections")) or 40,
                "allowed_updates": allowed,
                "ip_address": p.get("ip_address"),
            }
        )
        return True

    def _set_webhook(self, hook: dict[str, Any] | None) -> None:
        self._webhook = hook
        self._webhook_last_error = None
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            self._webhook_task = None
        if hook is not None:
            if self._poller is not None and not self._poller.done():
                self._poller.set_result(None)
            self._webhook_task = asyncio.get_running_loop().create_task(self._webhook_loop(hook))

    async def _api_getwebhookinfo(self, p: dict[str, Any], f: Any) -> Any:
        hook = self._webhook
        info: dict[str, Any] = {
            "url": hook["url"] if hook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if hook:
            info["max_connections"] = hook["max_connections"]
            if hook.get("allowed_updates"):
                info["allowed_updates"] = hook["allowed_updates"]
            if self._webhook_last_error:
                info["last_error_date"], info["last_error_message"] = self._webhook_last_error
        return info

    async def _webhook_loop(self, hook: dict[str, Any]) -> None:
        assert self._session is not None
        while not self._closing and self._webhook is hook:
            self._filter_allowed()
            if not self._updates or self._outage is not None:
                await asyncio.wait([self._new_update.future()], timeout=0.5)
                continue
            upd = self._updates[0]
            headers = {"Content-Type": "application/json"}
            if hook.get("secret_token"):
                headers["X-Telegram-Bot-Api-Secret-Token"] = hook["secret_token"]
            status: int | None = None
            error: str | None = None
            try:
                async with self._session.post(
                    hook["url"], data=json.dumps(upd).encode(), headers=headers
                ) as resp:
                    status = resp.status
                    await resp.read()
                    if not 200 <= status < 300:
                        error = f"Wrong response from the webhook: {status} {resp.reason}"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection refused, timeout, ...
                error = f"Connection failed: {exc!r}"
            self.webhook_deliveries.append(
                WebhookDelivery(upd["update_id"], hook["url"], status, error, headers, time.time())
            )
            self._changed.fire()
            if error is None:
                if self._updates and self._updates[0] is upd:
                    self._updates.popleft()
            else:
                self._webhook_last_error = (int(time.time()), error)
                await asyncio.sleep(self.webhook_retry_delay)

    def _filter_allowed(self) -> None:
        allowed = self._allowed_updates
        if not allowed:
            return
        kept = [u for u in self._updates if any(k in u for k in allowed)]
        if len(kept) != len(self._updates):
            self._updates = deque(kept)

    async def _api_getupdates(self, p: dict[str, Any], f: Any) -> Any:
        if self._webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        offset = maybe_int(p.get("offset")) or 0
        limit = min(100, max(1, maybe_int(p.get("limit")) or 100))
        timeout = max(0.0, min(50.0, float(p.get("timeout") or 0)))
        if p.get("allowed_updates"):
            self._allowed_updates = (
                list(json_param(p["allowed_updates"], "allowed updates")) or None
            )
        if offset > 0:
            while self._updates and self._updates[0]["update_id"] < offset:
                self._updates.popleft()
        elif offset < 0:
            while len(self._updates) > -offset:
                self._updates.popleft()
        if self._poller is not None and not self._poller.done():
            self._poller.set_result(None)  # the older poll ends with 409
        loop = asyncio.get_running_loop()
        me: asyncio.Future[None] = loop.create_future()
        self._poller = me
        deadline = loop.time() + timeout
        try:
            while True:
                self._filter_allowed()
                if self._updates:
                    return list(itertools.islice(self._updates, limit))
                remaining = deadline - loop.time()
                if remaining <= 0 or self._closing:
                    return []
                await asyncio.wait(
                    [self._new_update.future(), me],
                    timeout=remaining,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if me.done() and not self._closing:
                    if self._webhook is not None:
                        return []
                    raise ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that "
                        "only one bot instance is running",
                    )
        finally:
            if self._poller is me:
                self._poller = None

    async def _api_setmycommands(self, p: dict[str, Any], f: Any) -> Any:
        cmds = json_param(p.get("commands") or "[]", "commands")
        if not isinstance(cmds, list) or len(cmds) > 100:
            raise bad_request("BOT_COMMANDS_TOO_MUCH")
        clean = []
        for c in cmds:
            if not isinstance(c, dict):
                raise bad_request("BOT_COMMAND_INVALID")
            cmd, desc = str(c.get("command", "")), str(c.get("description", ""))
            if not re.fullmatch(r"[a-z0-9_]{1,32}", cmd.lower()) or not 1 <= len(desc) <= 256:
                raise bad_request("BOT_COMMAND_INVALID")
            clean.append({"command": cmd.lower(), "description": desc})
        key = (
            scope_key(json_param(p["scope"], "scope") if p.get("scope") else None),
            p.get("language_code") or "",
        )
        self._commands[key] = clean
        return True

    async def _api_getmycommands(self, p: dict[str, Any], f: Any) -> Any:
        key = (
            scope_key(json_param(p["scope"], "scope") if p.get("scope") else None),
            p.get("language_code") or "",
        )
        return list(self._commands.get(key, []))

    async def _api_deletemycommands(self, p: dict[str, Any], f: Any) -> Any:
        key = (
            scope_key(json_param(p["scope"], "scope") if p.get("scope") else None),
            p.get("language_code") or "",
        )
        self._commands.pop(key, None)
        return True
