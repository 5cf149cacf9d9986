"""Injected faults: `Fault` and the `FakeSlack` methods that inject them (failing calls,
an outage, lost acknowledgements) and serve them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Fault:
    method: str
    error: str
    status: int
    retry_after: float | None
    times: int | None
    match: Callable[[dict[str, Any]], bool] | None
    delay: float
    drop: bool


class FaultsMixin:
    """Injected failures of a `FakeSlack`."""

    # --- faults and limits ------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        error: str = "internal_error",
        status: int = 200,
        retry_after: float | None = None,
        times: int | None = 1,
        match: Callable[[dict[str, Any]], bool] | None = None,
        delay: float = 0.0,
        drop: bool = False,
    ) -> None:
        """The next `times` calls of `method` ("*": any method; `times` None: until
        cleared) matching `match` fail: an ``error`` answer with HTTP ``status`` (5xx:
        an HTML error page), a 429 with ``Retry-After`` when ``retry_after`` is set,
        after ``delay`` seconds (a hung request); ``drop`` aborts the connection
        instead (a connection reset) — the call never takes effect."""
        self._faults.append(Fault(method, error, status, retry_after, times, match, delay, drop))

    def clear_faults(self) -> None:
        self._faults.clear()

    def set_outage(self, on: bool) -> None:
        self._outage = on

    def lose_acks(self, n: int = 1) -> None:
        """The app's next `n` answers to deliveries are lost on the way back."""
        self._lost_acks += n

    def _take_fault(self, method: str, params: dict[str, Any]) -> Fault | None:
        for fault in self._faults:
            if fault.method not in ("*", method) or (
                fault.match is not None and not fault.match(params)
            ):
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
            return fault
        return None
