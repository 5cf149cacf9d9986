"""The `rules` command: what runs without asking in this session, and undoing it.

It lists the session's "Allow for session" rules from the database, each with a remove
button (data ``r:<session>:<rule id>``; the press is checked like every session button
— owner, the session's own thread — and then that the rule still exists and belongs to
that session; removals are audit-logged).  It also lists the ``permissions.allow``
rules of the session directory's own ``.claude/settings.json`` and
``.claude/settings.local.json``: read as data (never executed), shown as the folder's
own, which Claude Code applies only when the folder is trusted; they cannot be removed
from the chat — except the rules "Allow always (project)" wrote there: those are listed
with remove buttons (data ``rp:<session>:<id>``, checked the same way and that the rule
was written for this session's folder), and a removal takes the line out of the file
too (`project_rules.remove`) and is audit-logged.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from adapters.messages import Button, Markdown, Outbound
from bridge import render
from bridge.approvals import project_file, rules
from bridge.approvals import project_rules as written_rules
from bridge.commands.context import CommandContext, PressContext
from bridge.commands.registry import Section, button, command
from storage.models import SessionRow

if TYPE_CHECKING:
    from storage.db import Database

log = logging.getLogger(__name__)

SETTINGS_FILES: Final = (".claude/settings.json", ".claude/settings.local.json")
MAX_SETTINGS_BYTES: Final = 256 * 1024
# Rules with a button per list: Matrix turns buttons into reactions, keycaps 1️⃣–🔟.
MAX_SHOWN: Final = 10
_RULE_CHARS: Final = 200


def _shown(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _RULE_CHARS else flat[: _RULE_CHARS - 1] + "…"


def project_rules(cwd: str) -> list[tuple[str, str]]:
    """(file, rule) for each `permissions.allow` entry of the folder's Claude Code
    settings.  Only regular files inside the folder, of a sane size, are read."""
    root = Path(os.path.realpath(cwd))
    out: list[tuple[str, str]] = []
    for name in SETTINGS_FILES:
        path = root / name
        real = Path(os.path.realpath(path))
        if not real.is_relative_to(root) or not real.is_file():
            continue
        try:
            if real.stat().st_size > MAX_SETTINGS_BYTES:
                log.info("%s is too large to list its rules", real)
                continue
            data: Any = json.loads(real.read_text(encoding="utf-8", errors="replace"))
        except (OSError, ValueError) as e:
            log.info("cannot read %s: %s", real, e)
            continue
        perms = data.get("permissions") if isinstance(data, dict) else None
        allow = perms.get("allow") if isinstance(perms, dict) else None
        if isinstance(allow, list):
            out += [(name, r) for r in allow if isinstance(r, str) and r.strip()]
    return out


def rules_message(db: Database, session: SessionRow) -> Outbound:
    rows = db.permissions.rules(session.id)
    lines = ["**Allowed for this session**"]
    buttons: list[tuple[Button, ...]] = []
    if not rows:
        lines.append("_None._")
    for n, row in enumerate(rows[:MAX_SHOWN], start=1):
        rule = rules.Rule(row.tool_name, row.pattern)
        lines.append(f"{n}. `{rules.tick(rule.shown)}` — {rule.describe()}")
        # no emoji in the label: on Matrix "Remove n" is then keycap n
        buttons.append((Button(f"Remove {n}", f"r:{session.id}:{row.id}", "danger"),))
    if len(rows) > MAX_SHOWN:
        lines.append(f"_… and {len(rows) - MAX_SHOWN} more: remove some to list them._")
    written = db.project_rules.for_dir(written_rules.project_dir(session.cwd))
    ours = {f"{w.tool_name}({w.pattern})" for w in written}
    if written:
        present = project_file.allow_rules(session.cwd)
        lines += ["", f"**Allowed always in this folder** (written to `{project_file.SHOWN}`)"]
        for w in written:
            rule = rules.Rule(w.tool_name, w.pattern)
            gone = "" if rule.text in present else " _(no longer in the file: not honoured)_"
            room = len(buttons) < MAX_SHOWN
            mark = f"{len(buttons) + 1}." if room else "•"
            lines.append(f"{mark} `{rules.tick(rule.shown)}` — {rule.describe()}{gone}")
            if room:
                label = f"Remove {len(buttons) + 1}"
                buttons.append((Button(label, f"rp:{session.id}:{w.id}", "danger"),))
    project = [
        (f, r)
        for f, r in project_rules(session.cwd)
        if not (f == project_file.SHOWN and r in ours)  # listed above, with a button
    ]
    if project:
        lines += [
            "",
            "**This folder's own rules** (from its `.claude` settings; Claude Code applies "
            "them only when the folder is trusted — edit the files to change them)",
        ]
        lines += [f"• `{rules.tick(_shown(r))}` ({render.md_escape(f)})" for f, r in project]
    return Outbound((Markdown("\n".join(lines)),), tuple(buttons))


@command(
    "rules",
    help="list what runs without asking here; buttons remove session and project rules",
    section=Section.RULES,
    in_session=True,
    menu=False,
)
async def cmd_rules(ctx: CommandContext) -> None:
    session = ctx.session
    assert session is not None
    thread = ctx.services.thread_of(session.id) or ctx.thread
    ctx.services.reply(thread, rules_message(ctx.db, session), session_id=session.id)


@button("r")
async def press_remove(ctx: PressContext, rest: str) -> None:
    """A remove button of a `rules` list, pressed in its session's own thread."""
    found = ctx.session_here(rest)
    if found is None:
        return
    session, thread, rule_id = found
    press, db = ctx.press, ctx.db
    number = _rule_number(rule_id)
    row = db.permissions.rule(number) if number is not None else None
    if row is None or row.session_id != session.id:
        await _refuse_removal(ctx, rule_id, f"no such rule in {session.id}")
        return
    text = rules.Rule(row.tool_name, row.pattern).shown
    if not db.permissions.remove_rule(int(rule_id)):
        await ctx.answer("That rule is gone already.")
        return
    db.audit.log(
        platform=press.sender.platform,
        user=press.sender.key,
        action="rule-remove",
        detail=f"{session.id} {text[:300]}",
    )
    ctx.services.reply(
        thread,
        render.notice(f"🗑 Removed `{rules.tick(text)}` — it asks again from now on."),
        session_id=session.id,
    )


def _rule_number(rule_id: str) -> int | None:
    """The row number in a remove button's data, if it is one (and fits SQLite)."""
    valid = rule_id.isascii() and rule_id.isdigit() and len(rule_id) <= 18
    return int(rule_id) if valid else None


async def _refuse_removal(ctx: PressContext, rule_id: str, why: str) -> None:
    """A remove press for a rule that is not there (gone, foreign, forged): logged,
    audited, and the presser told."""
    press = ctx.press
    log.warning("refused rule removal %r from %s: %s", rule_id[:20], press.sender.key, why)
    ctx.db.audit.log(
        platform=press.sender.platform,
        user=press.sender.key,
        action="rule-remove",
        detail=f"refused {rule_id[:20]}: {why}",
        allowed=False,
    )
    await ctx.answer("That rule is gone already.")


@button("rp")
async def press_remove_project(ctx: PressContext, rest: str) -> None:
    """A remove button of a rule "Allow always (project)" wrote, pressed in its
    session's own thread: the line leaves the file and the record goes."""
    found = ctx.session_here(rest)
    if found is None:
        return
    session, thread, rule_id = found
    press, db = ctx.press, ctx.db
    number = _rule_number(rule_id)
    row = db.project_rules.get(number) if number is not None else None
    if row is None or row.project_dir != written_rules.project_dir(session.cwd):
        await _refuse_removal(ctx, rule_id, f"no such project rule for {session.id}")
        return
    text = rules.Rule(row.tool_name, row.pattern).shown
    try:
        removed = written_rules.remove(db, row, ctx.services.host.cli_env())
    except (project_file.SettingsRefused, OSError) as e:
        ctx.services.reply(
            thread,
            render.notice(f"⚠️ Not removed: {render.md_escape(str(e))}"),
            session_id=session.id,
        )
        return
    if not removed:
        await ctx.answer("That rule is gone already.")
        return
    where = str(project_file.path_of(session.cwd))
    db.audit.log(
        platform=press.sender.platform,
        user=press.sender.key,
        action="rule-remove",
        detail=f"project {where} {text[:300]}",
    )
    ctx.services.reply(
        thread,
        render.notice(
            f"🗑 Removed `{rules.tick(text)}` from `{rules.tick(where)}` — it asks again from now on."
        ),
        session_id=session.id,
    )
