"""Imports only point down: no module of the project imports, even indirectly, a module that
imports it back.

The graph is grimp's (the library behind ``lint-imports``): it reads every ``import`` statement,
including the ones inside functions, so a lazy import that hides a cycle still counts.
"""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("fulfillment", "config", "loadtests")


def import_cycles(graph: grimp.ImportGraph, package: str) -> list[list[str]]:
    """The import cycles among ``package``'s modules, each as ``[a, b, ..., a]``: for every module
    that is part of a cycle, the shortest one through it."""
    modules = sorted(m for m in graph.modules if m == package or m.startswith(package + "."))
    inside = set(modules)

    def imported_by(module: str) -> list[str]:
        return sorted((graph.find_modules_directly_imported_by(module) & inside) - {module})

    # Tarjan's strongly connected components, iterative (no recursion limit to worry about).
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for root in modules:
        if root in index:
            continue
        work = [(root, iter(imported_by(root)))]
        index[root] = lowlink[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = lowlink[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(imported_by(child))))
                    break
                if child in on_stack:
                    lowlink[node] = min(lowlink[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    lowlink[parent] = min(lowlink[parent], lowlink[node])
                if lowlink[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))

    # For each module of a group, the shortest way back to itself inside the group (deduplicated:
    # the same cycle read from another of its modules is reported once).
    cycles: dict[frozenset[tuple[str, str]], list[str]] = {}
    for group in groups:
        members = set(group)
        for start in group:
            came_from: dict[str, str] = {}
            frontier = [start]
            while start not in came_from:
                following = []
                for node in frontier:
                    for nxt in imported_by(node):
                        if nxt in members and nxt not in came_from:
                            came_from[nxt] = node
                            following.append(nxt)
                frontier = following
            back = [start]
            while (node := came_from[back[-1]]) != start:
                back.append(node)
            cycle = [start, *reversed(back[1:]), start]
            cycles.setdefault(frozenset(zip(cycle, cycle[1:], strict=False)), cycle)
    return sorted(cycles.values())


def describe(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    """``a -> b (a.py:12) -> a (b.py:40)``: each step with the line that imports."""
    steps = [cycle[0]]
    for importer, imported in zip(cycle, cycle[1:], strict=False):
        details = graph.get_import_details(importer=importer, imported=imported)
        where = f"{details[0]['importer']}:{details[0]['line_number']}" if details else "?"
        steps.append(f"{imported} ({where})")
    return " -> ".join(steps)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_has_no_import_cycle(graph: grimp.ImportGraph, package: str) -> None:
    cycles = import_cycles(graph, package)
    assert not cycles, "import cycles:\n" + "\n".join(describe(graph, c) for c in cycles)


def test_a_lazy_import_that_closes_a_cycle_is_found(tmp_path: Path, monkeypatch) -> None:
    # given a package whose second module imports the first inside a function
    pkg = tmp_path / "cyclepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "first.py").write_text("from cyclepkg import second\n")
    (pkg / "second.py").write_text("def later():\n    from cyclepkg import first\n")
    (pkg / "third.py").write_text("from cyclepkg import first\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    # when the graph is read
    graph = grimp.build_graph("cyclepkg", cache_dir=None)

    # then the cycle is reported, and only it
    cycles = import_cycles(graph, "cyclepkg")
    assert cycles == [["cyclepkg.first", "cyclepkg.second", "cyclepkg.first"]]
    assert describe(graph, cycles[0]) == (
        "cyclepkg.first -> cyclepkg.second (cyclepkg.first:1) -> cyclepkg.first (cyclepkg.second:2)"
    )
