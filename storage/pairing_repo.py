"""The `pairing_codes` and `paired_owners` tables' queries.

Storage only: signing and checking codes is `bridge/access/pairing.py`'s job.  `claim` is
the single-use guarantee — one conditional UPDATE, so of two people redeeming the
same code at once (two tasks, two threads or two processes) exactly one wins.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, func, select

from storage.base import Repo
from storage.models import AuditRow, PairedOwner, PairingCodeRow, utcnow


class PairingRepo(Repo):
    def add_code(self, row: PairingCodeRow) -> None:
        with self._session() as s:
            s.add(row)
            s.commit()

    def get_code(self, code_id: str) -> PairingCodeRow | None:
        with self._session() as s:
            return s.get(PairingCodeRow, code_id)

    def pending_codes(self) -> list[PairingCodeRow]:
        with self._session() as s:
            return list(s.exec(select(PairingCodeRow).where(PairingCodeRow.state == "pending")))

    def claim(self, code_id: str, by: str) -> bool:
        """Mark a pending code used by `by`; False if it was not pending any more."""
        with self._session() as s:
            result = s.exec(
                update(PairingCodeRow)
                .where(col(PairingCodeRow.id) == code_id)
                .where(col(PairingCodeRow.state) == "pending")
                .values(state="used", used_by=by, used_at=utcnow())
            )
            s.commit()
            return bool(result.rowcount)

    def add_owner(self, key: str, platform: str, code_id: str, signature: str) -> None:
        """Record (or re-sign: pairing again replaces an old row) a paired owner."""
        with self._session() as s:
            row = s.get(PairedOwner, key) or PairedOwner(key=key, platform=platform)
            row.platform, row.code_id, row.signature = platform, code_id, signature
            row.paired_at = utcnow()
            s.add(row)
            s.commit()

    def get_owner(self, key: str) -> PairedOwner | None:
        with self._session() as s:
            return s.get(PairedOwner, key)

    def remove_owner(self, key: str) -> bool:
        """Delete a paired owner's row; False if there was none."""
        with self._session() as s:
            row = s.get(PairedOwner, key)
            if row is None:
                return False
            s.delete(row)
            s.commit()
            return True

    def owners(self) -> list[PairedOwner]:
        with self._session() as s:
            return list(s.exec(select(PairedOwner).order_by(col(PairedOwner.paired_at))))

    def failures_since(self, user: str, since: datetime, actions: tuple[str, ...]) -> int:
        """How many of `user`'s audit rows with one of `actions` are newer than `since`
        (failed pairing attempts, for the brute-force limit)."""
        with self._session() as s:
            q = (
                select(func.count())
                .select_from(AuditRow)
                .where(AuditRow.user == user)
                .where(col(AuditRow.action).in_(actions))
                .where(col(AuditRow.at) >= since)
            )
            return int(s.exec(q).one())
