"""The `trusted_folders` and `trust_requests` tables' queries.

Storage only: what a folder's settings enable and when to ask is `bridge/approvals/trust.py`'s
job.  `decide` is the first-answer-wins guarantee for a trust prompt — one conditional
UPDATE, so of two presses at once exactly one decides.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import col, select

from storage.base import Repo
from storage.models import TrustedFolder, TrustRequestRow, utcnow
from storage.types import TrustRequestState, TrustSource


class TrustRepo(Repo):
    def folder(self, path: str) -> TrustedFolder | None:
        """The folder's record, revoked or not; None if it was never trusted."""
        with self._session() as s:
            return s.get(TrustedFolder, path)

    def trust(self, path: str, fingerprint: str, *, by: str, source: TrustSource) -> None:
        """Trust `path` as it is now (replaces an earlier record, revoked or not)."""
        with self._session() as s:
            row = s.get(TrustedFolder, path) or TrustedFolder(path=path)
            row.fingerprint, row.trusted_by, row.source = fingerprint, by, source
            row.trusted_at, row.revoked_at, row.revoked_by = utcnow(), None, ""
            s.add(row)
            s.commit()

    def revoke(self, path: str, *, by: str) -> bool:
        """Revoke trust; False if the folder was not trusted.  A record is kept (revoked),
        so Claude Code's own trust record is not taken as trust again."""
        with self._session() as s:
            row = s.get(TrustedFolder, path)
            was_trusted = row is not None and row.revoked_at is None
            row = row or TrustedFolder(path=path, source="revoked")
            row.revoked_at, row.revoked_by = utcnow(), by
            s.add(row)
            s.commit()
            return was_trusted

    def add_request(self, row: TrustRequestRow) -> None:
        with self._session() as s:
            s.add(row)
            s.commit()

    def request(self, request_id: str) -> TrustRequestRow | None:
        with self._session() as s:
            return s.get(TrustRequestRow, request_id)

    def pending_for(self, session_id: str) -> list[TrustRequestRow]:
        with self._session() as s:
            query = (
                select(TrustRequestRow)
                .where(TrustRequestRow.session_id == session_id)
                .where(TrustRequestRow.state == "pending")
                .order_by(col(TrustRequestRow.created_at))
            )
            return list(s.exec(query))

    def asked(self, session_id: str, fingerprint: str) -> bool:
        """A prompt for this fingerprint was shown in this session and not found stale:
        pending, answered Not now, or trusted (and perhaps untrusted since)."""
        with self._session() as s:
            query = (
                select(TrustRequestRow.id)
                .where(TrustRequestRow.session_id == session_id)
                .where(TrustRequestRow.fingerprint == fingerprint)
                .where(col(TrustRequestRow.state).in_(("pending", "declined", "trusted")))
            )
            return s.exec(query).first() is not None

    def set_prompt(self, request_id: str, outbox_id: int) -> None:
        with self._session() as s:
            row = s.get(TrustRequestRow, request_id)
            if row is not None:
                row.prompt_outbox_id = outbox_id
                s.add(row)
                s.commit()

    def decide(self, request_id: str, state: TrustRequestState, *, by: str) -> bool:
        """pending → `state`; False if it was not pending any more (first answer wins)."""
        with self._session() as s:
            result = s.exec(
                update(TrustRequestRow)
                .where(col(TrustRequestRow.id) == request_id)
                .where(col(TrustRequestRow.state) == "pending")
                .values(state=state, decided_by=by, decided_at=utcnow())
            )
            s.commit()
            return bool(result.rowcount)
