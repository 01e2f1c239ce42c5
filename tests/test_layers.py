"""The packages of `mailcast` import each other without cycles: each is built on the ones below
it (a rule two of them need lives in a lower module, such as `statuses` or `variants`); and only
the stores' factories ask which database they talk to."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import mailcast

ROOT = Path(mailcast.__file__).parent


def _package_of(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports() -> dict[str, set[str]]:
    """Package -> the other packages its modules import (at any level, lazily included)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        source = _package_of(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = (
                    [f"mailcast.{a.name}" for a in node.names]
                    if node.module == "mailcast"
                    else [node.module]
                )
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "mailcast" and len(parts) > 1 and parts[1] != source:
                    graph[source].add(parts[1])
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for target in sorted(graph.get(node, ())):
            found = visit(target, [*path, node])
            if found:
                return found
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return None


def test_the_packages_import_each_other_without_a_cycle():
    graph = _imports()
    assert "delivery" in graph["campaigns"]  # the scan sees imports at all
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_a_cycle_is_found_when_there_is_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _dialect_checks() -> list[str]:
    """Where code outside `db/` asks which database it talks to, as "module:function"."""
    found = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "db":
            continue
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                asks = (  # `x.dialect.name`, or `is_postgresql`
                    isinstance(node, ast.Attribute)
                    and node.attr == "name"
                    and isinstance(node.value, ast.Attribute)
                    and node.value.attr == "dialect"
                ) or (isinstance(node, ast.Name) and node.id == "is_postgresql")
                if asks:
                    found.append(f"{rel.with_suffix('')}:{function.name}")
                    break
    return sorted(set(found))


def test_only_the_store_factories_ask_which_database_it_is():
    # Different SQL per database lives in a store a factory picks at assembly, or in `db/`;
    # services, repositories and the worker hold no dialect branch.
    assert _dialect_checks() == [
        "campaigns/counts:count_store",
        "contacts/store:contact_store",
        "delivery/store:delivery_store",
        "tracking/store:event_store",
    ]
