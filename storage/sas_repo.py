"""The `sas_verifications` table's queries: emoji verifications of the bot waiting for
the person to compare them (`bridge/verify_desk.py` records and watches them,
`threadline verify` lists and decides them).

A decision is one conditional UPDATE ("still pending and undecided"), so the first of
two deciders (the CLI, a button on another platform) wins and the other learns it lost.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select

from storage.base import Repo
from storage.host_repo import as_utc
from storage.models import SasVerificationRow

OPEN = "pending"
MAX_AGE_S = 600.0  # the spec's 10 minutes: older runs are over even if a hard-killed
# daemon never marked them, so they are neither listed nor decidable
DECISIONS = ("confirm", "cancel")


class SasRepo(Repo):
    def add(
        self,
        transaction_id: str,
        *,
        platform: str,
        user_id: str,
        device_id: str,
        emoji: list[tuple[str, str]],
    ) -> SasVerificationRow:
        row = SasVerificationRow(
            transaction_id=transaction_id,
            platform=platform,
            user_id=user_id,
            device_id=device_id,
            emoji=json.dumps(emoji, ensure_ascii=False),
        )
        with self._session() as s:
            s.add(row)
            s.commit()
            s.refresh(row)
        return row

    def get(self, key: str | int) -> SasVerificationRow | None:
        """A row by its number or its transaction id."""
        R = SasVerificationRow
        with self._session() as s:
            if isinstance(key, int) or key.isdigit():
                return s.get(R, int(key))
            return s.exec(select(R).where(R.transaction_id == key)).first()

    def pending(self) -> list[SasVerificationRow]:
        """The verifications still waiting for a decision, oldest first."""
        R = SasVerificationRow
        with self._session() as s:
            query = (
                select(R)
                .where(R.state == OPEN, R.decision == "", col(R.created_at) > _cutoff())
                .order_by(col(R.id))
            )
            return list(s.exec(query))

    def decide(self, row_id: int, decision: str, by: str) -> bool:
        """Write `decision` ("confirm"/"cancel") if nobody decided yet; whether it won."""
        if decision not in DECISIONS:
            raise ValueError(f"unknown decision {decision!r}")
        R = SasVerificationRow
        with self._session() as s:
            result = s.exec(
                update(R)
                .where(
                    col(R.id) == row_id,
                    col(R.state) == OPEN,
                    col(R.decision) == "",
                    col(R.created_at) > _cutoff(),
                )
                .values(decision=decision, decided_by=by, updated_at=datetime.now(UTC))
            )
            s.commit()
            return bool(result.rowcount)

    def finish(self, row_id: int, state: str, code: str = "") -> None:
        """The run's end as the daemon saw it: verified, cancelled or timed_out."""
        R = SasVerificationRow
        with self._session() as s:
            s.exec(
                update(R)
                .where(col(R.id) == row_id)
                .values(state=state, cancel_code=code, updated_at=datetime.now(UTC))
            )
            s.commit()


def _cutoff() -> datetime:
    return as_utc(datetime.now(UTC) - timedelta(seconds=MAX_AGE_S))


def emoji_of(row: SasVerificationRow) -> list[tuple[str, str]]:
    return [(str(e), str(n)) for e, n in json.loads(row.emoji or "[]")]
