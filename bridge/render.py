"""Agent events → platform-neutral `Outbound` messages.

Functions that decide *what* a session looks like in a chat: one-line tool
summaries, permission prompts (with the unified diff of an edit, computed against the
file on disk by `bridge/diffs.py` — the one thing here that reads anything; nothing
sends or stores), their edited "decided" form, the running turn's live status message,
the final answer with its footer, notices, help and the session list.  Adapters
decide *how* it looks on their platform.  Text we interpolate into Markdown is
escaped with `md_escape`; Claude's own text is passed through as Markdown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from adapters.messages import Block, Button, Code, FileOut, Folded, Markdown, Outbound
from adapters.registry import BY_NAME
from bridge.diffs import PROMPT_DIFF_CHARS, file_diff, rel_path, shorten_diff

TOOL_LINE_CHARS: Final = 80
MAX_CODE_CHARS: Final = 3000  # a Bash command or tool input shown in a prompt
DECIDED_DIFF_CHARS: Final = 1200  # the decided form keeps only the start of the diff
STATUS_TOOLS: Final = 15

Decision = Literal["allowed", "allowed_session", "allowed_project", "denied", "timeout", "expired"]

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~!&])")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_EDIT_TOOLS: Final = frozenset({"Edit", "MultiEdit", "Write"})
_TELLING_KEYS: Final = (
    "file_path", "path", "notebook_path", "command", "pattern", "url", "query",
    "description", "prompt", "skill", "plan",
)  # fmt: skip


def md_escape(text: str) -> str:
    """Escape text so Markdown shows it literally (CommonMark backslash escapes)."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def _one_line(text: str, limit: int = TOOL_LINE_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _str(input: Mapping[str, Any], key: str) -> str:
    value = input.get(key)
    return "" if value is None else str(value)


def tool_line(name: str, input: Mapping[str, Any], cwd: str = "") -> str:
    """A compact one-liner for a tool call: ``Read src/app.py``, ``Bash: npm test``."""
    inp: Mapping[str, Any] = input if isinstance(input, Mapping) else {}
    path = rel_path(_str(inp, "file_path") or _str(inp, "notebook_path"), cwd)
    where = f" in {rel_path(_str(inp, 'path'), cwd)}" if inp.get("path") else ""
    if name in ("Read", "Write", "Edit", "MultiEdit", "NotebookEdit") and path:
        line = f"{name} {path}"
    elif name == "Bash":
        line = f"Bash: {_str(inp, 'command')}"
    elif name == "Grep":
        line = f'Grep "{_str(inp, "pattern")}"{where}'
    elif name == "Glob":
        line = f"Glob {_str(inp, 'pattern')}{where}"
    elif name == "WebSearch":
        line = f'WebSearch "{_str(inp, "query")}"'
    elif name in ("Task", "Agent"):
        line = f"{name}: {_str(inp, 'description') or _str(inp, 'prompt')}"
    elif name == "TodoWrite" and isinstance(inp.get("todos"), list):
        todos = [t for t in inp["todos"] if isinstance(t, Mapping)]
        done = sum(1 for t in todos if t.get("status") == "completed")
        line = f"TodoWrite: {done}/{len(todos)} done"
    elif name == "TaskCreate" and inp.get("subject"):
        line = f"TaskCreate: {_str(inp, 'subject')}"
    elif name == "TaskUpdate" and inp.get("taskId"):
        status = f" → {_str(inp, 'status')}" if inp.get("status") else ""
        line = f"TaskUpdate #{_str(inp, 'taskId')}{status}"
    else:
        shown = name[5:].replace("__", ".") if name.startswith("mcp__") else name
        value = next((_str(inp, k) for k in _TELLING_KEYS if inp.get(k)), "")
        if not value:
            value = next((v for v in inp.values() if isinstance(v, str) and v.strip()), "")
        if value and value in (_str(inp, "path"), _str(inp, "file_path")):
            value = rel_path(value, cwd)
        line = f"{shown} {value}" if value else shown
    return _one_line(line)


def _code_capped(
    text: str, language: str, *, attach: bool, name: str
) -> tuple[list[Block], FileOut | None]:
    """Code shown whole, or — too long for a message — its start with the whole text
    attached as a file (`attach`), so nothing is approved unseen."""
    if len(text) <= MAX_CODE_CHARS:
        return [Code(text, language)], None
    more = len(text) - MAX_CODE_CHARS
    if not attach:
        return [
            Code(text[:MAX_CODE_CHARS], language),
            Markdown(f"_… {more} more characters_"),
        ], None
    note = Markdown(
        f"⚠️ **{more} more characters are not shown here** — the whole text is attached "
        f"as `{name}`: read it before allowing."
    )
    return [Code(text[:MAX_CODE_CHARS], language), note], FileOut(
        name, text.encode("utf-8", "replace")
    )


def _tool_summary(
    name: str, input: Mapping[str, Any], cwd: str, *, max_diff: int, attach: bool
) -> tuple[list[Block], FileOut | None]:
    """The body shared by a permission prompt and its decided form."""
    inp: Mapping[str, Any] = input if isinstance(input, Mapping) else {}
    if name in _EDIT_TOOLS:
        diff = file_diff(name, inp, cwd)
        if len(diff.text) <= max_diff:
            blocks: list[Block] = [Code(diff.text, "diff")]
            if diff.note:
                blocks.append(Markdown(f"_{md_escape(diff.note)}_"))
            return blocks, None
        shown, omitted = shorten_diff(diff.text, max_diff)
        note = f"… {omitted} more lines" + (" — full diff attached" if attach else "")
        file = (
            FileOut(f"{diff.name}.diff", diff.text.encode("utf-8", "replace")) if attach else None
        )
        return [Code(shown, "diff"), Markdown(f"_{md_escape(note)}_")], file
    if name == "Bash":
        blocks, file = _code_capped(
            _str(inp, "command"), "bash", attach=attach, name="command.sh.txt"
        )
        if inp.get("description"):
            blocks.insert(0, Markdown(f"_{md_escape(_one_line(_str(inp, 'description'), 300))}_"))
        return blocks, file
    if name == "ExitPlanMode" and isinstance(inp.get("plan"), str):
        plan: str = inp["plan"]
        if len(plan) <= MAX_CODE_CHARS * 2 or not attach:
            return [Markdown(plan[: MAX_CODE_CHARS * 2])], None
        more = len(plan) - MAX_CODE_CHARS * 2
        cut = Markdown(f"⚠️ **{more} more characters** — the whole plan is attached as `plan.md`.")
        return [Markdown(plan[: MAX_CODE_CHARS * 2]), cut], FileOut(
            "plan.md", plan.encode("utf-8", "replace")
        )
    raw = json.dumps(dict(inp), ensure_ascii=False, separators=(",", ":"), default=str)
    return _code_capped(raw, "json", attach=attach, name="input.json")


def _prompt_title(name: str, input: Mapping[str, Any], cwd: str) -> str:
    """A prompt's header: the tool line, but for Bash only the tool's name — its body
    shows the command in a code block, and once is what the person should read."""
    return "Bash" if name == "Bash" else tool_line(name, input, cwd)


def permission_prompt(
    request_id: str,
    name: str,
    input: Mapping[str, Any],
    cwd: str,
    *,
    session_rule: str = "",
    notes: Sequence[str] = (),
    project_rule: str = "",
) -> Outbound:
    """The message asking the owner to allow a tool call, with Allow / Deny buttons
    whose data is ``p:<request_id>:<a|s|d>``, and Allow for session only with a
    `session_rule` (the Markdown line saying what it would store), and Always (project)
    (``:p``) only with a `project_rule` (the line saying what it would write).  `notes` (Markdown
    lines: the real target, Claude Code's reason) go under the header."""
    data = {k: f"p:{request_id}:{k}" for k in "aspd"}
    if any(len(d.encode()) > 64 for d in data.values()):
        raise ValueError(f"request id too long for button data: {request_id!r}")
    body, file = _tool_summary(name, input, cwd, max_diff=PROMPT_DIFF_CHARS, attach=True)
    header = Markdown(f"🔐 Allow **{md_escape(_prompt_title(name, input, cwd))}**?")
    extra: list[Block] = [Markdown("\n".join(notes))] if notes else []
    if session_rule:
        body.append(Markdown(session_rule))
    if project_rule:
        body.append(Markdown(project_rule))
    buttons = (
        Button("✅ Allow", data["a"], "primary"),
        *((Button("♾️ Allow for session", data["s"]),) if session_rule else ()),
        *((Button("📌 Always (project)", data["p"]),) if project_rule else ()),
        Button("❌ Deny", data["d"], "danger"),
    )
    return Outbound(
        (header, *extra, *body), (buttons,), notify=True, file=file, mention=True, role="prompt"
    )


def _duration(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def permission_decided(
    name: str,
    input: Mapping[str, Any],
    cwd: str,
    decision: Decision,
    by: str,
    reason: str = "",
    *,
    timeout_s: float = 600,
    rule_note: str = "",
) -> Outbound:
    """A permission prompt's edited form once decided: no buttons, who decided what;
    `rule_note` (Markdown) says which rule an "allowed for session" stored (or which
    rule "always (project)" wrote where)."""
    body, _ = _tool_summary(name, input, cwd, max_diff=DECIDED_DIFF_CHARS, attach=False)
    who = f" by {md_escape(by)}" if by else ""
    minutes = f"{timeout_s / 60:g} min" if timeout_s >= 60 else f"{timeout_s:g} s"
    line = {
        "allowed": f"✅ Allowed{who}",
        "allowed_session": f"♾️ Allowed for this session{who}",
        "allowed_project": f"📌 Allowed always in this project{who}",
        "denied": f"❌ Denied{who}",
        "timeout": f"⏱ No answer in {minutes} — denied",
        "expired": "⌛ Expired — no longer pending",
    }.get(decision, f"❔ {md_escape(str(decision))}")
    if reason:
        line += f": {md_escape(_one_line(reason, 500))}"
    if rule_note:
        line += f" — {rule_note}"
    header = Markdown(f"🔐 **{md_escape(_prompt_title(name, input, cwd))}**")
    return Outbound((header, *body, Markdown(line)))


def _group(lines: Sequence[str]) -> list[tuple[str, int]]:
    groups: list[tuple[str, int]] = []
    for line in lines:
        if groups and groups[-1][0] == line:
            groups[-1] = (line, groups[-1][1] + 1)
        else:
            groups.append((line, 1))
    return groups


def _open_fence(text: str) -> tuple[str, str] | None:
    """(opening line, marker) of a fenced code block left open at the end of `text`."""
    state: tuple[str, str] | None = None
    for line in text.split("\n"):
        m = _FENCE.fullmatch(line)
        if m is None:
            continue
        marker, info = m.group(1), m.group(2)
        if state is None:
            if not (marker[0] == "`" and "`" in info):
                state = (line.strip(), marker)
        elif marker[0] == state[1][0] and len(marker) >= len(state[1]) and not info.strip():
            state = None
    return state


def tail_markdown(text: str, max_chars: int) -> str:
    """The last ~`max_chars` of streamed Markdown, cut at a line boundary, with a code
    fence that was open at the cut reopened and one left open at the end closed."""
    cut = 0
    if len(text) > max_chars:
        cut = max(0, len(text) - max(max_chars, 1))
        for sep in ("\n", " "):
            at = text.find(sep, cut, len(text) - 1)
            if at != -1:
                cut = at + 1
                break
    body = text[cut:]
    reopened = _open_fence(text[:cut]) if cut else None
    if reopened is not None:
        body = f"{reopened[0]}\n{body}"
    still_open = _open_fence(body)
    if still_open is not None:
        body = f"{body.rstrip(chr(10))}\n{still_open[1]}"
    return f"…\n{body}" if cut else body


TOOL_OUTPUT_CHARS = 800


def status_message(
    tool_lines: Sequence[str],
    preview: str,
    *,
    running: bool,
    stop_data: str,
    max_preview: int,
    last_output: tuple[str, str] | None = None,
) -> Outbound:
    """The running turn's live message: recent tool lines, the latest tool's output
    folded (its tail), and the tail of the text so far."""
    blocks: list[Block] = []
    groups = _group(tool_lines)
    if groups:
        shown = groups[-STATUS_TOOLS:]
        hidden = sum(n for _, n in groups[: len(groups) - len(shown)])
        lines = [f"_+{hidden} earlier_"] if hidden else []
        lines += [f"▸ {md_escape(line)}" + (f" ×{n}" if n > 1 else "") for line, n in shown]
        blocks.append(Markdown("\n".join(lines)))
    if last_output is not None and last_output[1].strip():
        line, output = last_output
        body = output.strip()
        if len(body) > TOOL_OUTPUT_CHARS:
            body = "…" + body[-TOOL_OUTPUT_CHARS:]
        blocks.append(Folded(f"Output: {line}", body))
    if preview.strip():
        blocks.append(Markdown(tail_markdown(preview, max_preview)))
    elif running:
        blocks.append(Markdown("⏳ _Working…_"))
    if not blocks:
        blocks.append(Markdown("⏹ _Stopped_"))
    buttons = ((Button("⏹ Stop", stop_data, "danger"),),) if running and stop_data else ()
    return Outbound(tuple(blocks), buttons, notify=False, role="status" if buttons else "done")


def final_message(
    text: str, *, duration_s: float, cost_usd: float, tools: Sequence[str], is_error: bool = False
) -> Outbound:
    """The turn's answer as a new message (so the phone notifies), with a footer."""
    parts = [f"⏱ {_duration(duration_s)}", f"${cost_usd:.4f}"]
    if tools:
        names = list(dict.fromkeys(tools))
        parts.append(f"{len(tools)} tool{'s' if len(tools) != 1 else ''}: " + ", ".join(names))
    blocks: list[Block] = [Markdown("⚠️ **Error**")] if is_error else []
    blocks.append(Markdown(text if text.strip() else "_(no text)_"))
    blocks.append(Markdown(md_escape(" · ".join(parts))))
    return Outbound(tuple(blocks), notify=True, role="final")


def notice(text: str, *, notify: bool = False) -> Outbound:
    """A short message from Threadline itself (Markdown)."""
    return Outbound((Markdown(text),), notify=notify)


def session_header(session_id: str, cwd: str, mode: str, model: str) -> Outbound:
    """The first message of a session's thread."""
    return notice(
        f"📂 `{cwd}` · session `{session_id}` · mode {mode}"
        + (f" · model {model}" if model else "")
    )


def session_started(session_id: str, cwd: str, link: str | None) -> Outbound:
    """Where `new` was typed, when the session's thread is elsewhere."""
    return notice(f"▶️ Session `{session_id}` started in `{cwd}`" + (f": {link}" if link else "."))


def diff_message(diff: str, *, name: str = "changes.diff") -> Outbound:
    """A unified diff (e.g. `git diff`); a long one shows its start and is attached whole."""
    if len(diff) <= PROMPT_DIFF_CHARS:
        return Outbound((Code(diff.rstrip("\n"), "diff"),))
    shown, omitted = shorten_diff(diff.rstrip("\n"), PROMPT_DIFF_CHARS)
    note = Markdown(f"_… {omitted} more lines — full diff attached_")
    return Outbound(
        (Code(shown, "diff"), note), file=FileOut(name, diff.encode("utf-8", "replace"))
    )


def stream_preview(text: str, *, max_chars: int) -> Outbound:
    """The streamed text so far, for a native draft/stream preview (tail only)."""
    return Outbound((Markdown(tail_markdown(text, max_chars) or "…"),), role="stream")


@dataclass(frozen=True, slots=True)
class SessionSummary:
    id: str
    title: str
    cwd: str
    state: str
    last_activity: datetime
    cost_usd: float
    link: str | None = None
    host: str | None = None  # shown only when sessions run on more than one host
    host_online: bool = True


_STATE_ICON: Final = {
    "running": "🟢",
    "waiting": "🔐",
    "idle": "⚪",
    "interrupted": "🟠",
    "ended": "⚫",
}


def _ago(when: datetime, now: datetime) -> str:
    if when.tzinfo is None and now.tzinfo is not None:
        when = when.replace(tzinfo=UTC)  # naive datetimes in storage are UTC
    elif now.tzinfo is None and when.tzinfo is not None:
        now = now.replace(tzinfo=UTC)
    s = int((now - when).total_seconds())
    if s < 60:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit} ago"
    return "just now"  # pragma: no cover


def cmd(platform: str, text: str) -> str:
    """A command as the person types it on `platform`, as inline code: `/resume 1782e4`
    on Telegram, `!resume 1782e4` on Slack and Matrix (hints must work when copied)."""
    spec = BY_NAME.get(platform)
    return f"`{spec.command_prefix if spec else '!'}{text}`"


def sessions_message(
    rows: Sequence[SessionSummary], *, platform: str, now: datetime | None = None
) -> Outbound:
    """Every session with state, directory, last activity, cost and a link to its thread."""
    if not rows:
        return notice(f"No sessions yet — start one with {cmd(platform, 'new')}")
    now = now or datetime.now(UTC)
    lines = [f"**Sessions** ({len(rows)})"]
    for r in sorted(rows, key=lambda r: r.last_activity.timestamp(), reverse=True):
        title = md_escape(_one_line(r.title or r.id, 60))
        if r.link:
            title = f"[{title}](<{r.link.replace('<', '%3C').replace('>', '%3E')}>)"
        icon = _STATE_ICON.get(r.state, "•")
        on = ""
        if r.host:
            on = f"on {md_escape(r.host)}{'' if r.host_online else ' (host offline)'} · "
        lines.append(
            f"{icon} {title} · {md_escape(r.state)} · {on}`{r.cwd.replace('`', '')}` · "
            f"{_ago(r.last_activity, now)} · ${r.cost_usd:.2f} · id `{r.id.replace('`', '')}`"
        )
    return Outbound((Markdown("\n".join(lines)),))
