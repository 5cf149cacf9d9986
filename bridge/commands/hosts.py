"""The `hosts` command: every machine running Threadline on this database, with its
allowed roots, its open sessions, the chat accounts it is the gateway for
(`bridge/gateway.py`), its last heartbeat and whether it is online
(`bridge/hosts.py`).  Also the one-line host labels `sessions` shows when there is
more than one host."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime

from adapters.messages import Markdown, Outbound
from bridge import render
from bridge.commands.context import CommandContext, Services
from bridge.commands.registry import Section, command
from bridge.hosts import HostStatus
from storage.host_repo import as_utc
from storage.types import OPEN_SESSION_STATES


@command(
    "hosts",
    help="list the machines running Threadline: roots, sessions, heartbeat, online",
    section=Section.HOSTS,
)
async def cmd_hosts(ctx: CommandContext) -> None:
    s = ctx.services
    open_rows = s.db.sessions.list(states=OPEN_SESSION_STATES)
    # A session with no host yet belongs to this one (see `HostRepo.start`).
    sessions = Counter(r.host or s.hosts.name for r in open_rows)
    running = Counter(r.host or s.hosts.name for r in open_rows if r.state == "running")
    gateways = s.db.gateways.held(s.now())
    ctx.reply(hosts_message(s.hosts.statuses(), sessions, running, now=s.now(), gateways=gateways))


def ago(when: datetime, now: datetime) -> str:
    """``12 s ago``, ``5 min ago``, ``3 h ago``, ``2 d ago`` (a clock slightly ahead: 0 s)."""
    secs = max(0, int((as_utc(now) - as_utc(when)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if secs >= size:
            return f"{secs // size} {unit} ago"
    return f"{secs} s ago"


def _state(host: HostStatus, now: datetime) -> str:
    if host.online:
        return f"🟢 **{render.md_escape(host.name)}** · online · heartbeat {ago(host.last_heartbeat, now)}"
    name = render.md_escape(host.name)
    if host.stopped_at is not None:
        return f"⚫ **{name}** · offline (stopped {ago(host.stopped_at, now)})"
    return f"🔴 **{name}** · offline · last heartbeat {ago(host.last_heartbeat, now)}"


def hosts_message(
    hosts: Sequence[HostStatus],
    sessions: Counter[str],
    running: Counter[str],
    *,
    now: datetime,
    gateways: Mapping[str, Sequence[str]] | None = None,
) -> Outbound:
    """One line per host: state, heartbeat, open (and running) sessions, the chat
    accounts it is the gateway for, roots."""
    if not hosts:
        return render.notice("No hosts have started on this database yet.")
    lines = [f"**Hosts** ({len(hosts)})"]
    for host in hosts:
        count = sessions[host.name]
        parts = [_state(host, now) + (" · this host" if host.this else "")]
        label = f"{count} session{'' if count == 1 else 's'}"
        parts.append(label + (f" ({running[host.name]} running)" if running[host.name] else ""))
        held = (gateways or {}).get(host.name)
        if held:
            parts.append("gateway for " + ", ".join(f"`{a.replace('`', '')}`" for a in held))
        roots = ", ".join(f"`{r.replace('`', '')}`" for r in host.roots) or "none"
        parts.append(f"roots {roots}")
        lines.append(" · ".join(parts))
    return Outbound((Markdown("\n".join(lines)),))


def session_hosts(s: Services) -> dict[str, bool] | None:
    """For `sessions`: each known host → online, when there is more than one host
    (one host's listing stays as it was); else None."""
    statuses = s.hosts.statuses()
    if len(statuses) < 2:
        return None
    return {h.name: h.online for h in statuses}
