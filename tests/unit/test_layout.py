"""The package layout's one-way rules, read from the source's imports.

Every module of the product packages is parsed (`ast`, so imports inside functions and
`if TYPE_CHECKING:` blocks count too: a type-only import is still a dependency a reader
has to follow) and the rules of the architecture are checked:

- no import cycle among the modules of `bridge/`, and only the composition root's own
  user (`bridge/cli/daemon.py`) imports `bridge.app`: feature modules take the narrow
  collaborators they use, never the whole bridge;
- `adapters/` imports nothing from `bridge/` (the seam vocabulary lives in `adapters/`);
- `agent/` imports no adapter;
- only `storage/` imports sqlmodel.

Edges still waiting for another change are listed below with why; the lists only
shrink — an entry whose import is gone fails the test, so it is removed with the fix.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bridge", "agent", "adapters", "storage")

# Nothing pending: every rule below holds with no exceptions; an entry added here must
# name the import that breaks a rule and be removed with it.
PENDING_BRIDGE_APP: set[str] = set()
PENDING_CYCLE_EDGES: set[tuple[str, str]] = set()
PENDING_ADAPTER_IMPORTS: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path, name: str) -> Iterator[str]:
    """Every module name `path` imports, anywhere in it, absolute."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            yield base
            # `from bridge import files` imports the module bridge.files
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _graph() -> dict[str, set[str]]:
    """Module → the product modules (and third-party top-level names) it imports."""
    modules = {
        _module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for imported in _imported(path, name):
            if imported in modules:
                edges.add(imported)
            elif imported.partition(".")[0] not in PACKAGES:
                edges.add(imported.partition(".")[0])  # third party: its top-level name
        edges.discard(name)
        graph[name] = edges
    return graph


GRAPH = _graph()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _in(package: str, module: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_graph_sees_every_kind_of_import() -> None:
    # a type-only import, an import inside a function and a relative-free `from x import
    # module` are all edges; otherwise the rules below would pass on blind spots
    assert "bridge.app" in GRAPH["bridge.cli.daemon"]
    assert "bridge.outbox.outbox" in GRAPH["bridge.app"]
    assert "bridge.render" in GRAPH["bridge.recovery"]  # `from bridge import render`
    assert {"bridge", "agent", "adapters", "storage"} <= {m.partition(".")[0] for m in GRAPH}


def test_no_import_cycle_in_bridge() -> None:
    bridge = {
        m: {e for e in edges if _in("bridge", e) and (m, e) not in PENDING_CYCLE_EDGES}
        for m, edges in GRAPH.items()
        if _in("bridge", m)
    }
    for m in PENDING_BRIDGE_APP:
        bridge[m].discard("bridge.app")
    assert _cycles(bridge) == []


def test_only_the_daemon_builds_the_bridge() -> None:
    users = {m for m, edges in GRAPH.items() if "bridge.app" in edges}
    assert users - PENDING_BRIDGE_APP == {"bridge.cli.daemon"}


@pytest.mark.parametrize(
    "pending",
    sorted({(m, "bridge.app") for m in PENDING_BRIDGE_APP} | PENDING_CYCLE_EDGES),
    ids=lambda e: f"{e[0]}->{e[1]}",
)
def test_pending_bridge_edges_still_exist(pending: tuple[str, str]) -> None:
    """Remove an entry from the lists above once its import is gone."""
    assert pending[1] in GRAPH[pending[0]]


def test_adapters_import_nothing_from_bridge() -> None:
    found = {
        (m, e)
        for m, edges in GRAPH.items()
        if _in("adapters", m)
        for e in edges
        if _in("bridge", e)
    }
    assert found - PENDING_ADAPTER_IMPORTS == set()
    # the allowlist only shrinks: an entry whose import is gone must be removed
    assert PENDING_ADAPTER_IMPORTS - found == set()


def test_agent_imports_no_adapter() -> None:
    found = {
        (m, e)
        for m, edges in GRAPH.items()
        if _in("agent", m)
        for e in edges
        if _in("adapters", e) and e not in ("adapters.messages", "adapters.tasks")
    }
    assert found == set()


def test_only_storage_imports_sqlmodel() -> None:
    found = {m for m, edges in GRAPH.items() if "sqlmodel" in edges and not _in("storage", m)}
    assert found == set()
