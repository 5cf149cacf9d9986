"""What `threadline audit` shows in its result column.

An audit row records whether an action was accepted (`allowed`) and, in its detail, what
it did — a permission press leads with the decision (`denied: Bash …`), a plan with what
was done with it.  The result column says the latter: a refused press is `refused`
whatever it asked for, an accepted Deny is `denied`, not "allowed".
"""

from __future__ import annotations

# What `threadline audit` shows as the result of an accepted permission press.
_AUDIT_RESULT = {
    "allowed": "allowed",
    "allowed_session": "allowed for session",
    "allowed_project": "allowed always (project)",
    "denied": "denied",
}


def audit_result(action: str, detail: str, allowed: bool) -> str:
    """The result column of an audit row: a refused press (or any refused action) is
    `refused`; an accepted permission press is the decision it made (`denied`,
    `allowed`, `allowed for session`); a plan's is what was done with it (`approved`,
    `sent back`, `keep planning`), a question's `answered`; any other accepted action
    is `allowed`."""
    if not allowed:
        return "refused"
    head = detail.partition(":")[0]
    if action == "permission" and head in _AUDIT_RESULT:
        return _AUDIT_RESULT[head]
    if action == "plan" and head in ("approved", "sent back", "keep planning"):
        return head  # what was done with Claude's plan
    if action == "question":
        return "answered"
    return "allowed"
