"""No two modules of the package import each other, directly or through others.

Every import counts, also those inside functions: a lazy import hides a cycle from Python
at start-up but not from a reader, who can no longer read the modules in an order."""

import ast
from pathlib import Path

import rewards_as_labels

PACKAGE = Path(rewards_as_labels.__file__).parent


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, named within the package (``data``, ``integrations.trl``)."""
    modules = {}  # absolute dotted name -> file
    for path in PACKAGE.rglob("*.py"):
        parts = ("rewards_as_labels", *path.relative_to(PACKAGE).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
                module = ".".join(p for p in (base, node.module) if p)
                found |= {module} | {f"{module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        short = lambda m: m.removeprefix("rewards_as_labels").lstrip(".") or "__init__"  # noqa: E731
        graph[short(name)] = {short(m) for m in found if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Groups of modules that reach each other through imports (strongly connected, size > 1)."""

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    reachable = {m: reach(m) for m in graph}
    groups = []
    for m in sorted(graph):
        group = {m} | {n for n in reachable[m] if m in reachable[n]}
        if len(group) > 1 and group not in groups:
            groups.append(group)
    return groups


def test_the_graph_sees_relative_lazy_and_absolute_imports():
    graph = import_graph()
    assert {"arithmetic", "conversion", "local_files", "problems"} <= graph["data"]  # top-level relative
    assert "data" in graph["config"]  # inside Config.validate
    assert "gradients" in graph["integrations.trl"]  # from a subpackage
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_no_import_cycles():
    assert cycles(import_graph()) == []
