"""'Allow always (project)': which rule may be written, writing it, honouring it, removing it.

The CLI suggests permanent rules itself (`PermissionAsked.suggestions`: `addRules`,
behaviour `allow`, destination `localSettings`, i.e. the folder's
`.claude/settings.local.json`).  Measured with CLI 2.1.337 against the fake model:
`npm test` → `Bash(npm test *)`, `touch marker` → `Bash(touch marker *)`, `git add -A`
→ `Bash(git add *)`, `touch a && touch b` → `Bash(touch a *)` + `Bash(touch b *)`,
`python3 -m json.tool in.json` → exactly that, a WebFetch of `https://example.com/x` →
`WebFetch(domain:example.com)`; Write/Edit (inside or outside the folder, and of
`.claude/settings.json`) get only `setMode acceptEdits` / `addDirectories` for the
session — no rule.  Most suggestions are wider than the request the person saw, so:

- A project rule is offered only where the CLI suggests a `localSettings` allow rule for
  the same tool AND `rules.rule_for` (the "Allow for session" limits) makes one; what is
  written is always that narrow rule (the suggestion itself when it is the same text).
- Only Bash and WebFetch: for Edit the CLI suggests no rule, and Claude Code reads
  `Edit(//dir/**)` as covering `.claude/` and `.git/` too, which Threadline's session rule
  excludes.  A Bash command containing `*` gets none (the CLI reads `*` as a wildcard).

Honouring: `.claude/settings.local.json` of an untrusted folder is never read by the CLI
(`agent/trust.py`), so the broker matches these rules itself, exactly like session rules,
but only rules Threadline wrote (a `project_rules` row for the resolved folder) AND that are
still a line of the file: deleting the line revokes the rule, and a rule someone else put
in the file is never honoured because of this feature.

A folder whose only own settings are rules Threadline wrote is not asked about for
trust (`only_ours`): there is nothing else to trust, and Threadline honours them itself.

Folder trust: a trusted folder's record carries the fingerprint of its settings files;
our own write would change it and make the folder "changed → ask again".  So after the
write the record is re-fingerprinted — but only when it matched the files exactly before
the write and the files after it differ by nothing but our one rule: content anyone else
put there meanwhile (or before, unshown) never rides along into trust.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.trust import FolderSettings, Item, inspect_folder
from bridge.approvals import project_file, rules
from storage.db import Database
from storage.models import ProjectRule

log = logging.getLogger(__name__)

TOOLS = frozenset({"Bash", "WebFetch"})


def suggested(suggestions: Sequence[Mapping[str, Any]], tool: str) -> list[str]:
    """The rule texts the CLI suggests allowing in `localSettings` for `tool`."""
    out: list[str] = []
    for s in suggestions:
        if s.get("type") != "addRules" or s.get("behavior") != "allow":
            continue
        if s.get("destination") != "localSettings":
            continue
        for r in s.get("rules") or ():
            if isinstance(r, Mapping) and r.get("toolName") == tool:
                content = r.get("ruleContent")
                out.append(f"{tool}({content})" if isinstance(content, str) else tool)
    return out


def offer(req: rules.Request, suggestions: Sequence[Mapping[str, Any]]) -> rules.Rule | None:
    """The rule "Allow always (project)" would write, or None (no such button)."""
    narrow = rules.rule_for(req)
    if narrow is None or narrow.tool not in TOOLS:
        return None
    wide = suggested(suggestions, narrow.tool)
    if not wide:
        return None  # the CLI does not think of this as a permanent rule
    if narrow.tool == "Bash" and "*" in narrow.content.removesuffix(":*"):
        return None
    if narrow.text not in wide:
        log.info("CLI suggested %s; offering the narrower %s", wide, narrow.text)
    return narrow


def decided_note(rule: rules.Rule, where: str) -> str:
    """What the decided prompt says about a written project rule (Markdown)."""
    return (
        f"wrote `{rules.tick(rule.shown)}` to `{rules.tick(where)}`: {rule.describe()}, "
        "in every session here and in the terminal `claude`"
    )


def project_dir(cwd: str) -> str:
    return os.path.realpath(cwd)


def honoured(db: Database, req: rules.Request) -> rules.Rule | None:
    """The rule Threadline wrote for this folder that lets `req` run, if any is still
    in the file."""
    rows = db.project_rules.for_dir(project_dir(req.cwd))
    if not rows:
        return None
    present = project_file.allow_rules(req.cwd)
    for row in rows:
        rule = rules.Rule(row.tool_name, row.pattern)
        if rule.text in present and rules.matches(rule, req):
            return rule
    return None


def only_ours(db: Database, settings: FolderSettings) -> bool:
    """Everything the folder's settings enable is allow rules Threadline wrote into its
    settings.local.json (and honours itself): nothing to ask the owner to trust."""
    if not settings.items:
        return False
    written = {
        f"{r.tool_name}({r.pattern})" for r in db.project_rules.for_dir(str(settings.folder))
    }
    return all(
        i.kind == "allow"
        and i.source == project_file.SHOWN
        and any(i.text == _allow_text(r) for r in written)
        for i in settings.items
    )


def _allow_text(rule: str) -> str:
    return f"allow rule {rule} (runs without asking)"  # as agent/trust.py lists it


def _one_item_apart(big: FolderSettings, small: FolderSettings, rule: str) -> bool:
    """`big` is `small` plus the one allow item of `rule` in settings.local.json (or the
    same, when the rule was there already or not at all)."""
    ours = Item("allow", project_file.SHOWN, _allow_text(rule))
    items = list(big.items)
    if ours in items and ours not in small.items:
        items.remove(ours)
    return items == list(small.items)


def _keeping_trust(
    db: Database, folder: str, env: Mapping[str, str], rule: str, change: Callable[[], object]
) -> str:
    """Run `change` (adding or removing our `rule` line) and keep a trusted folder
    trusted when nothing else changed; returns a note on trust ("" if none)."""
    before = inspect_folder(Path(folder), env)
    record = db.trust.folder(folder)
    trusted = (
        record is not None
        and record.revoked_at is None
        and bool(before.fingerprint)
        and record.fingerprint == before.fingerprint
        and not before.unreadable
    )
    change()
    if not trusted:
        return ""
    after = inspect_folder(Path(folder), env)
    same = _one_item_apart(after, before, rule) or _one_item_apart(before, after, rule)
    if same and db.project_rules.refingerprint(folder, before.fingerprint, after.fingerprint):
        return "the folder stays trusted"
    log.warning("%s changed by more than our rule: its trust is asked about again", folder)
    return "the folder's settings changed by more than this rule, so its trust is asked again"


def write(
    db: Database, cwd: str, rule: rules.Rule, *, by: str, session_id: str, env: Mapping[str, str]
) -> str:
    """Write `rule` to the folder's settings.local.json and record it; returns a note on
    folder trust ("" when there is nothing to say).  `SettingsRefused` if it cannot be."""
    folder = project_dir(cwd)
    note = _keeping_trust(
        db, folder, env, rule.text, lambda: project_file.add_rule(folder, rule.text)
    )
    db.project_rules.add(
        ProjectRule(
            project_dir=folder,
            tool_name=rule.tool,
            pattern=rule.content,
            created_by=by,
            session_id=session_id,
        )
    )
    return note


def try_write(
    db: Database, cwd: str, rule: rules.Rule, *, by: str, session_id: str, env: Mapping[str, str]
) -> tuple[bool, str]:
    """`write`, for a press: (written, a line for the thread — "" when there is nothing
    to say).  Synchronous on purpose: nothing else may decide the request between the
    broker's check and its decision."""
    try:
        note = write(db, cwd, rule, by=by, session_id=session_id, env=env)
    except (project_file.SettingsRefused, OSError) as e:
        why = str(e) if isinstance(e, project_file.SettingsRefused) else f"cannot write ({e})"
        log.warning("project rule %s not written in %s: %s", rule.text, cwd, why)
        return False, f"⚠️ Nothing was written: {why}. Choose Allow or Deny."
    return True, (f"🛡 {note}." if "asked again" in note else "")


def remove(db: Database, row: ProjectRule, env: Mapping[str, str]) -> bool:
    """Take the rule's line out of the file and forget it; False if it was forgotten
    already.  `SettingsRefused` if the file cannot be changed (the record then stays)."""
    text = f"{row.tool_name}({row.pattern})"
    _keeping_trust(
        db, row.project_dir, env, text, lambda: project_file.remove_rule(row.project_dir, text)
    )
    return db.project_rules.remove(row.id or 0)
