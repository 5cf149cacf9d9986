"""Injected faults: `Fault` and the `FakeTelegram` methods that inject them (`fail_next`,
`set_outage`) and serve them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .errors import DEFAULT_DESCRIPTIONS, status_for
from .wire import CANONICAL


@dataclass
class Fault:
    """An injected failure; see FakeTelegram.fail_next."""

    method: str  # canonical name, or "*"
    status: int | None
    description: str | None
    parameters: dict[str, Any] | None
    times: int | None  # None: until cleared
    match: Callable[[dict[str, Any]], bool] | None = None
    applied: bool = False
    delay: float = 0.0
    served: int = 0
    reset: bool = False  # abort the connection instead of answering


class FaultsMixin:
    """Injected failures of a `FakeTelegram`: the next calls failing, an outage."""

    def fail_next(
        self,
        method: str,
        status: int | None = None,
        *,
        times: int | None = 1,
        error_description: str | None = None,
        retry_after: int | None = None,
        parameters: Mapping[str, Any] | None = None,
        match: Callable[[dict[str, Any]], bool] | None = None,
        applied: bool = False,
        delay: float = 0.0,
        reset: bool = False,
    ) -> Fault:
        """Make the next `times` calls of `method` ("*" = any; None = until cleared) fail.

        * ``fail_next("sendMessage", 502)`` — HTTP 502 "Bad Gateway" (PTB: NetworkError).
        * ``fail_next("sendMessage", error_description="Bad Request: message thread not
          found")`` — status inferred from the prefix (400 here).
        * ``fail_next("sendMessage", retry_after=3)`` — 429 with parameters.retry_after.
        * ``match=lambda p: p.get("message_thread_id")`` — only calls whose (normalised)
          parameters match; others pass.
        * ``applied=True`` — the call takes effect, only the answer is the error.
        * ``delay=2.0`` — wait before answering (with no status/description: answer
          normally after the delay — a slow server).
        * ``reset=True`` — abort the connection instead of answering (a connection
          reset; with ``applied`` the call takes effect first, i.e. a lost response).
        """
        canonical = CANONICAL.get(method.lower(), method) if method != "*" else "*"
        params = dict(parameters) if parameters else None
        if retry_after is not None:
            params = {**(params or {}), "retry_after": int(retry_after)}
        if status is None:
            if retry_after is not None:
                status = 429
            elif error_description is not None:
                status = status_for(error_description)
            elif delay:
                status = None
            else:
                status = 500
        if status is not None and error_description is None:
            if status == 429:
                error_description = f"Too Many Requests: retry after {int(retry_after or 1)}"
                params = params or {"retry_after": int(retry_after or 1)}
            else:
                error_description = DEFAULT_DESCRIPTIONS.get(status, "Internal Server Error")
        fault = Fault(
            method=canonical,
            status=status,
            description=error_description,
            parameters=params,
            times=times,
            match=match,
            applied=applied,
            delay=delay,
            reset=reset,
        )
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self._faults.clear()

    async def set_outage(self, mode: int | str | None) -> None:
        """Global outage: an HTTP status (e.g. 502) for every call and download,
        ``"refused"`` (the port is closed: connection refused, open connections are cut),
        or ``None`` to end it."""
        if mode is not None and mode != "refused" and not isinstance(mode, int):
            raise ValueError(mode)
        previous, self._outage = self._outage, mode
        if mode == "refused" and previous != "refused":
            assert self._site is not None and self._runner is not None
            server = self._site._server  # the listening asyncio server
            if server is not None:
                server.close()
            for handler in list(self._runner.server.connections if self._runner.server else []):
                handler.force_close()
            await self._site.stop()
        elif previous == "refused" and mode != "refused":
            assert self._runner is not None
            self._site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
            await self._site.start()
        self._changed.fire()
        self._new_update.fire()

    @property
    def outage(self) -> int | str | None:
        return self._outage

    def _take_fault(self, method: str, params: dict[str, Any]) -> Fault | None:
        for fault in self._faults:
            if fault.method not in ("*", method):
                continue
            if fault.match is not None and not fault.match(params):
                continue
            fault.served += 1
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
            return fault
        return None
