"""The `gateway_leases` table's queries: which host is the gateway of each chat account
(`bridge/gateway.py`), with a fencing epoch.

Every change is one conditional statement, so two hosts racing never both win, on
SQLite and PostgreSQL alike: the first holder is an INSERT (the primary key lets one
of two concurrent inserts through), a takeover or re-acquire an UPDATE whose WHERE
says "free, expired, or already ours", a renewal an UPDATE whose WHERE says "still
ours, under this epoch".  The epoch grows whenever the lease changes hands or is taken
again after it lapsed; a holder that renews with an older epoch learns it was deposed.

Times come from the caller's clock (UTC).  SQLite stores them without a zone, in a
format that orders like the time itself, so the comparisons work on both backends.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import case, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from storage.base import Repo
from storage.host_repo import as_utc
from storage.models import GatewayLeaseRow

RELEASED = datetime(1970, 1, 1, tzinfo=UTC)  # the expiry of a lease given up on purpose


class GatewayRepo(Repo):
    def acquire(self, account: str, host: str, now: datetime, ttl: float) -> int | None:
        """Make `host` the holder of `account` until `now + ttl` if the lease is free,
        expired, or already `host`'s; its epoch then, or None if another host holds it."""
        now = as_utc(now)
        until = now + timedelta(seconds=ttl)
        L = GatewayLeaseRow
        with self._session() as s:
            lapsed = col(L.expires_at) <= now
            result = s.exec(
                update(L)
                .where(col(L.account) == account)
                .where((col(L.holder) == host) | lapsed)
                .values(
                    holder=host,
                    # a new holder, or ours again after it lapsed: a new epoch
                    epoch=case(
                        ((col(L.holder) != host) | lapsed, col(L.epoch) + 1),
                        else_=col(L.epoch),
                    ),
                    expires_at=until,
                )
            )
            if result.rowcount:
                # Read inside the same transaction: our update holds the row (PostgreSQL)
                # or the database (SQLite), so this is the epoch we wrote.
                row = s.get(L, account)
                s.commit()
                return row.epoch if row is not None else None
            s.rollback()
        try:
            with self._session() as s:
                s.add(L(account=account, holder=host, epoch=1, expires_at=until))
                s.commit()
                return 1
        except IntegrityError:  # someone else holds it (or just took it first)
            return None

    def renew(self, account: str, host: str, epoch: int, now: datetime, ttl: float) -> bool:
        """Extend `host`'s lease on `account` to `now + ttl`, only if it still holds it
        under `epoch` (no other host held it since); False: deposed."""
        until = as_utc(now) + timedelta(seconds=ttl)
        L = GatewayLeaseRow
        with self._session() as s:
            result = s.exec(
                update(L)
                .where(col(L.account) == account)
                .where(col(L.holder) == host)
                .where(col(L.epoch) == epoch)
                .values(expires_at=until)
            )
            s.commit()
            return bool(result.rowcount)

    def release(self, account: str, host: str, epoch: int) -> bool:
        """Give the lease up (a clean stop): any host may take it at once, under a new
        epoch.  False if `host` no longer held it under `epoch`."""
        L = GatewayLeaseRow
        with self._session() as s:
            result = s.exec(
                update(L)
                .where(col(L.account) == account)
                .where(col(L.holder) == host)
                .where(col(L.epoch) == epoch)
                .values(expires_at=RELEASED)
            )
            s.commit()
            return bool(result.rowcount)

    def holder(self, account: str) -> GatewayLeaseRow | None:
        """The lease as stored (expiry in UTC), expired or not; None if never taken."""
        with self._session() as s:
            row = s.get(GatewayLeaseRow, account)
            if row is None:
                return None
            out = GatewayLeaseRow.model_validate(row.model_dump())
        out.expires_at = as_utc(out.expires_at)
        return out

    def held(self, now: datetime) -> dict[str, list[str]]:
        """Host → the chat accounts whose lease it holds at `now` (unexpired), sorted."""
        with self._session() as s:
            rows = list(s.exec(select(GatewayLeaseRow)))
        out: dict[str, list[str]] = {}
        for row in sorted(rows, key=lambda r: r.account):
            if as_utc(row.expires_at) > as_utc(now):
                out.setdefault(row.holder, []).append(row.account)
        return out
