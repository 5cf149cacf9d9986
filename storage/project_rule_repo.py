"""The `project_rules` table's queries: the rules Threadline wrote into project settings.

Storage only: which rule may be written, the file itself and the matching are
`bridge/approvals/project_rules.py`'s job.  `refingerprint` is here too because it is the
one trust-record change that goes with writing such a rule: a conditional UPDATE, so a
record changed (revoked, re-trusted) meanwhile is left alone.
"""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlmodel import col, select

from storage.base import Repo
from storage.models import ProjectRule, TrustedFolder


class ProjectRuleRepo(Repo):
    def add(self, rule: ProjectRule) -> ProjectRule:
        """Record `rule` (one row per directory and rule: an existing one is returned)."""
        with self._session() as s:
            q = (
                select(ProjectRule)
                .where(ProjectRule.project_dir == rule.project_dir)
                .where(ProjectRule.tool_name == rule.tool_name)
                .where(ProjectRule.pattern == rule.pattern)
            )
            found = s.exec(q).first()
            if found is not None:
                return found
            s.add(rule)
            s.commit()
            s.refresh(rule)
            return rule

    def for_dir(self, project_dir: str) -> list[ProjectRule]:
        with self._session() as s:
            q = select(ProjectRule).where(ProjectRule.project_dir == project_dir)
            return list(s.exec(q.order_by(col(ProjectRule.id))))

    def get(self, rule_id: int) -> ProjectRule | None:
        with self._session() as s:
            return s.get(ProjectRule, rule_id)

    def remove(self, rule_id: int) -> bool:
        """Forget a rule; False if it was already gone."""
        with self._session() as s:
            result = s.exec(delete(ProjectRule).where(col(ProjectRule.id) == rule_id))
            s.commit()
            return bool(result.rowcount)

    def refingerprint(self, path: str, old: str, new: str) -> bool:
        """A trusted (not revoked) folder recorded with fingerprint `old` now has `new`;
        False (nothing changed) if the record is not exactly that any more."""
        with self._session() as s:
            result = s.exec(
                update(TrustedFolder)
                .where(col(TrustedFolder.path) == path)
                .where(col(TrustedFolder.fingerprint) == old)
                .where(col(TrustedFolder.revoked_at).is_(None))
                .values(fingerprint=new)
            )
            s.commit()
            return bool(result.rowcount)
