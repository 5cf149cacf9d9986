"""Repositories: the queries the bridge runs, grouped by table.

Each repository holds the engine and cipher it uses (`storage/base.py`) and opens a
short sqlmodel session per call, so callers never hold a transaction across an
`await`.  The outbox's queries live in `storage/outbox_repo.py`.  Updates take named,
typed keyword arguments: a misspelt column or a state outside its closed set is a
type error, not a silently added attribute.

Columns that hold what people and Claude wrote are sealed with the cipher
(`[storage] encrypt = true`) on the way in and opened on the way out, so callers
only ever see plain text: a session's title (it quotes the first prompt), a turn's
prompt, a permission request's tool input and deny reason, an audit row's detail.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlmodel import col, func, select

from storage.base import Repo
from storage.models import (
    AuditRow,
    OutboxRow,
    PermissionRequestRow,
    SessionRow,
    SessionRule,
    ThreadBinding,
    TurnRow,
    utcnow,
)
from storage.types import (
    OPEN_SESSION_STATES,
    BindingKind,
    PermissionState,
    SessionState,
    TurnId,
    TurnState,
)


class SessionRepo(Repo):
    def _open(self, row: SessionRow | None) -> SessionRow | None:
        if row is not None and self._cipher.enabled:
            row = SessionRow.model_validate(row.model_dump())
            row.title = self._cipher.open(row.title)
        return row

    def add(self, row: SessionRow) -> SessionRow:
        stored = SessionRow.model_validate(row.model_dump())
        stored.title = self._cipher.seal(row.title)
        with self._session() as s:
            s.add(stored)
            s.commit()
        return row

    def get(self, session_id: str) -> SessionRow | None:
        with self._session() as s:
            return self._open(s.get(SessionRow, session_id))

    def update(
        self,
        session_id: str,
        *,
        state: SessionState | None = None,
        mode: str | None = None,
        model: str | None = None,
        title: str | None = None,
        cwd: str | None = None,
        claude_session_id: str | None = None,
        last_activity: datetime | None = None,
    ) -> SessionRow | None:
        """Set the given columns (None: leave as is); the row as it is now, or None
        if there is no such session."""
        with self._session() as s:
            row = s.get(SessionRow, session_id)
            if row is None:
                return None
            if state is not None:
                row.state = state
            if mode is not None:
                row.mode = mode
            if model is not None:
                row.model = model
            if title is not None:
                row.title = self._cipher.seal(title)
            if cwd is not None:
                row.cwd = cwd
            if claude_session_id is not None:
                row.claude_session_id = claude_session_id
            if last_activity is not None:
                row.last_activity = last_activity
            s.add(row)
            s.commit()
            s.refresh(row)
            return self._open(row)

    def touch(self, session_id: str) -> None:
        self.update(session_id, last_activity=utcnow())

    def add_cost(self, session_id: str, cost_usd: float) -> None:
        with self._session() as s:
            row = s.get(SessionRow, session_id)
            if row is not None:
                row.cost_usd += cost_usd
                row.turns += 1
                row.last_activity = utcnow()
                s.add(row)
                s.commit()

    def by_claude_id(self, claude_session_id: str) -> SessionRow | None:
        with self._session() as s:
            return self._open(
                s.exec(
                    select(SessionRow).where(SessionRow.claude_session_id == claude_session_id)
                ).first()
            )

    def list(self, *, states: Sequence[SessionState] | None = None) -> list[SessionRow]:
        with self._session() as s:
            q = select(SessionRow).order_by(col(SessionRow.last_activity).desc())
            if states:
                q = q.where(col(SessionRow.state).in_(list(states)))
            return [r for r in map(self._open, s.exec(q)) if r is not None]

    def count_open(self) -> int:
        with self._session() as s:
            q = (
                select(func.count())
                .select_from(SessionRow)
                .where(col(SessionRow.state).in_(OPEN_SESSION_STATES))
            )
            return int(s.exec(q).one())


class BindingRepo(Repo):
    def add(self, row: ThreadBinding) -> ThreadBinding:
        with self._session() as s:
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    def by_thread_key(self, thread_key: str) -> ThreadBinding | None:
        with self._session() as s:
            return s.exec(
                select(ThreadBinding).where(ThreadBinding.thread_key == thread_key)
            ).first()

    def for_session(self, session_id: str) -> ThreadBinding | None:
        with self._session() as s:
            return s.exec(
                select(ThreadBinding).where(ThreadBinding.session_id == session_id)
            ).first()

    def rebind(
        self,
        old_key: str,
        *,
        thread_id: str | None,
        thread_key: str,
        kind: BindingKind,
        header_message_id: str | None,
    ) -> None:
        with self._session() as s:
            row = s.exec(select(ThreadBinding).where(ThreadBinding.thread_key == old_key)).first()
            if row is None:
                return
            row.thread_id, row.thread_key, row.kind = thread_id, thread_key, kind
            row.header_message_id = header_message_id
            s.add(row)
            s.commit()


class PermissionRepo(Repo):
    def _open(self, row: PermissionRequestRow | None) -> PermissionRequestRow | None:
        if row is not None and self._cipher.enabled:
            row = PermissionRequestRow.model_validate(row.model_dump())
            row.input_json = self._cipher.open(row.input_json)
            row.reason = self._cipher.open(row.reason)
        return row

    def add(self, row: PermissionRequestRow) -> PermissionRequestRow:
        stored = PermissionRequestRow.model_validate(row.model_dump())
        stored.input_json = self._cipher.seal(row.input_json)
        stored.reason = self._cipher.seal(row.reason)
        with self._session() as s:
            s.add(stored)
            s.commit()
        return row

    def get(self, request_id: str) -> PermissionRequestRow | None:
        with self._session() as s:
            return self._open(s.get(PermissionRequestRow, request_id))

    def set_prompt(self, request_id: str, outbox_id: int) -> None:
        with self._session() as s:
            row = s.get(PermissionRequestRow, request_id)
            if row is not None:
                row.prompt_outbox_id = outbox_id
                s.add(row)
                s.commit()

    def decide(self, request_id: str, state: PermissionState, *, by: str, reason: str = "") -> bool:
        """Move a pending request to `state`; False if it was already decided
        (first answer wins — the check and the write are one UPDATE)."""
        with self._session() as s:
            from sqlalchemy import update

            result = s.exec(
                update(PermissionRequestRow)
                .where(col(PermissionRequestRow.id) == request_id)
                .where(col(PermissionRequestRow.state) == "pending")
                .values(
                    state=state,
                    decided_by=by,
                    reason=self._cipher.seal(reason),
                    decided_at=utcnow(),
                )
            )
            s.commit()
            return bool(result.rowcount)

    def decided_unshown(self, since: datetime) -> list[PermissionRequestRow]:
        """Requests decided since `since` whose prompt got no edit queued after the
        decision: the daemon died between the two (they are separate transactions).
        Recovery shows the decision on the prompt, so its buttons do not linger."""
        from sqlalchemy import and_, exists

        edited = exists().where(
            and_(
                col(OutboxRow.op) == "edit",
                col(OutboxRow.target_id) == col(PermissionRequestRow.prompt_outbox_id),
                col(OutboxRow.created_at) >= col(PermissionRequestRow.decided_at),
            )
        )
        with self._session() as s:
            q = (
                select(PermissionRequestRow)
                .where(col(PermissionRequestRow.state) != "pending")
                .where(col(PermissionRequestRow.prompt_outbox_id).is_not(None))
                .where(col(PermissionRequestRow.decided_at) >= since)
                .where(~edited)
            )
            return [r for r in map(self._open, s.exec(q)) if r is not None]

    def pending(self, session_id: str | None = None) -> list[PermissionRequestRow]:
        with self._session() as s:
            q = select(PermissionRequestRow).where(PermissionRequestRow.state == "pending")
            if session_id is not None:
                q = q.where(PermissionRequestRow.session_id == session_id)
            return [r for r in map(self._open, s.exec(q)) if r is not None]

    def add_rule(self, rule: SessionRule) -> None:
        with self._session() as s:
            s.add(rule)
            s.commit()

    def rules(self, session_id: str) -> list[SessionRule]:
        with self._session() as s:
            q = select(SessionRule).where(SessionRule.session_id == session_id)
            return list(s.exec(q.order_by(col(SessionRule.id))))

    def rule(self, rule_id: int) -> SessionRule | None:
        with self._session() as s:
            return s.get(SessionRule, rule_id)

    def remove_rule(self, rule_id: int) -> bool:
        """Delete a session rule; False if it was already gone."""
        with self._session() as s:
            from sqlalchemy import delete

            result = s.exec(delete(SessionRule).where(col(SessionRule.id) == rule_id))
            s.commit()
            return bool(result.rowcount)

    def by_prompt(self, outbox_id: int) -> PermissionRequestRow | None:
        """The request whose prompt is outbox row `outbox_id`."""
        with self._session() as s:
            q = select(PermissionRequestRow).where(
                PermissionRequestRow.prompt_outbox_id == outbox_id
            )
            return self._open(s.exec(q).first())


class TurnRepo(Repo):
    def start(self, session_id: str, prompt: str) -> TurnId:
        with self._session() as s:
            row = TurnRow(session_id=session_id, prompt=self._cipher.seal(prompt))
            s.add(row)
            s.commit()
            s.refresh(row)
            assert row.id is not None
            return TurnId(row.id)

    def finish(
        self,
        turn_id: int,
        *,
        state: TurnState,
        cost_usd: float = 0.0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        duration_ms: int = 0,
        tools: str = "",
    ) -> None:
        """Record how the turn ended (and what it cost); stamps `ended_at`."""
        with self._session() as s:
            row = s.get(TurnRow, turn_id)
            if row is None:
                return
            row.state = state
            row.cost_usd, row.duration_ms, row.tools = cost_usd, duration_ms, tools
            row.input_tokens, row.output_tokens = input_tokens, output_tokens
            row.ended_at = utcnow()
            s.add(row)
            s.commit()

    def set_status_message(self, turn_id: int, outbox_id: int) -> None:
        """Remember the turn's status message (a restart marks it interrupted)."""
        with self._session() as s:
            row = s.get(TurnRow, turn_id)
            if row is None:
                return
            row.status_outbox_id = outbox_id
            s.add(row)
            s.commit()

    def running(self) -> list[TurnRow]:
        with self._session() as s:
            return list(s.exec(select(TurnRow).where(TurnRow.state == "running")))

    def cost_since(self, since: datetime, session_id: str | None = None) -> tuple[float, int, int]:
        """(dollars, input tokens, output tokens) of turns ended since `since`."""
        with self._session() as s:
            q = select(
                func.coalesce(func.sum(TurnRow.cost_usd), 0.0),
                func.coalesce(func.sum(TurnRow.input_tokens), 0),
                func.coalesce(func.sum(TurnRow.output_tokens), 0),
            ).where(col(TurnRow.started_at) >= since)
            if session_id is not None:
                q = q.where(TurnRow.session_id == session_id)
            cost, tin, tout = s.exec(q).one()
            return float(cost), int(tin), int(tout)


class AuditRepo(Repo):
    def log(
        self, *, platform: str, user: str, action: str, detail: str = "", allowed: bool = True
    ) -> None:
        with self._session() as s:
            s.add(
                AuditRow(
                    platform=platform,
                    user=user,
                    action=action,
                    detail=self._cipher.seal(detail[:500]),
                    allowed=allowed,
                )
            )
            s.commit()

    def recent(self, limit: int = 100) -> list[AuditRow]:
        with self._session() as s:
            rows = list(s.exec(select(AuditRow).order_by(col(AuditRow.id).desc()).limit(limit)))
        if self._cipher.enabled:
            rows = [AuditRow.model_validate(r.model_dump()) for r in rows]
            for r in rows:
                r.detail = self._cipher.open(r.detail)
        return rows

    def refused_since(self, user: str, since: timedelta) -> int:
        with self._session() as s:
            q = (
                select(func.count())
                .select_from(AuditRow)
                .where(AuditRow.user == user)
                .where(AuditRow.action == "refused-notified")
                .where(col(AuditRow.at) >= utcnow() - since)
            )
            return int(s.exec(q).one())
