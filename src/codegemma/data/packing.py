"""Repository-level packing: dependency-graph order for files that import each other, lexical order with
each test beside its implementation for the rest (CodeGemma report, section 2; facts document section 6)."""

from __future__ import annotations

import posixpath
from collections import defaultdict, deque
from collections.abc import Sequence

from .imports import dependencies
from .languages import tested_file


def resolve(name: str, paths: Sequence[str], by_stem: dict[str, list[str]]) -> str | None:
    """The repository path an import names, by longest path-suffix match (ties: shortest path, then by name).

    The editor's context (codegemma.repo) uses this quick match on a live buffer; packing resolves imports
    the way each language's build tool does (codegemma.data.imports).
    """
    parts = [p for p in name.strip("/").split("/") if p and p != "."]
    if not parts:
        return None
    best: tuple[int, int, str] | None = None
    for path in by_stem.get(parts[-1].rsplit(".", 1)[0], ()):
        segs = posixpath.splitext(path)[0].split("/")
        if segs[-1] == "__init__" or segs[-1] == "mod" or segs[-1] == "index":
            segs = segs[:-1]
        n = 0
        while n < min(len(segs), len(parts)) and segs[-1 - n] == parts[-1 - n].rsplit(".", 1)[0]:
            n += 1
        if n and (best is None or (-n, len(path), path) < best):
            best = (-n, len(path), path)
    return best[2] if best else None


def dependency_graph(files: dict[str, str], build_files: dict[str, str] | None = None) -> dict[str, set[str]]:
    """path -> the repository paths it depends on, resolved per language (see codegemma.data.imports)."""
    return dependencies(files, build_files)


def break_cycles(graph: dict[str, set[str]]) -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
    """Removes the least important edge of each cycle until none is left.

    An edge's importance is how many files import its target (fan-in): an import of a widely used
    module says more about order than one of a rarely used file. Ties: the edge whose source sorts last.
    """
    graph = {k: set(v) for k, v in graph.items()}
    dropped: list[tuple[str, str]] = []
    while True:
        cycle = _find_cycle(graph)
        if cycle is None:
            return graph, dropped
        fan_in = defaultdict(int)
        for targets in graph.values():
            for t in targets:
                fan_in[t] += 1
        edges = list(zip(cycle, cycle[1:] + cycle[:1]))
        u, v = min(edges, key=lambda e: (fan_in[e[1]], [-ord(c) for c in e[0]], e[1]))
        graph[u].discard(v)
        dropped.append((u, v))


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    color: dict[str, int] = {}
    for start in sorted(graph):
        if color.get(start):
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        color[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                color[node] = 2
                stack.pop()
                path.pop()
            elif color.get(nxt) == 1:
                return path[path.index(nxt):]
            elif not color.get(nxt):
                color[nxt] = 1
                stack.append((nxt, iter(sorted(graph[nxt]))))
                path.append(nxt)
    return None


def _distances(undirected: dict[str, set[str]], placed: set[str]) -> dict[str, int]:
    dist = {p: 0 for p in placed}
    queue = deque(placed)
    while queue:
        node = queue.popleft()
        for nxt in undirected[node]:
            if nxt not in dist:
                dist[nxt] = dist[node] + 1
                queue.append(nxt)
    return dist


def graph_order(graph: dict[str, set[str]]) -> list[str]:
    """Topological order (imports first); among ready files the one nearest to those placed, ties by path."""
    dag, _ = break_cycles(graph)
    nodes = sorted(dag)
    undirected: dict[str, set[str]] = {n: set() for n in nodes}
    for u, targets in dag.items():
        for v in targets:
            undirected[u].add(v)
            undirected[v].add(u)
    waiting = {n: len(dag[n]) for n in nodes}
    importers: dict[str, set[str]] = defaultdict(set)
    for u, targets in dag.items():
        for v in targets:
            importers[v].add(u)
    ready = {n for n in nodes if waiting[n] == 0}
    order: list[str] = []
    placed: set[str] = set()
    while ready:
        dist = _distances(undirected, placed) if placed else {}
        pick = min(ready, key=lambda n: (dist.get(n, 1 << 30), n))
        ready.remove(pick)
        order.append(pick)
        placed.add(pick)
        for imp in importers[pick]:
            waiting[imp] -= 1
            if waiting[imp] == 0:
                ready.add(imp)
    return order


def lexical_order(paths: Sequence[str]) -> list[str]:
    """Sorted by path, with each test file right after the file it tests (same folder, or anywhere)."""
    paths = sorted(paths)
    tests: dict[str, list[str]] = defaultdict(list)
    by_name: dict[str, list[str]] = defaultdict(list)
    for p in paths:
        by_name[posixpath.basename(p)].append(p)
    rest = []
    for p in paths:
        target = tested_file(posixpath.basename(p))
        impl = None
        if target:
            same_dir = posixpath.join(posixpath.dirname(p), target)
            impl = same_dir if same_dir in paths else (by_name.get(target) or [None])[0]
        if impl and impl != p:
            tests[impl].append(p)
        else:
            rest.append(p)
    out: list[str] = []
    for p in rest:
        out.append(p)
        out.extend(tests.pop(p, []))
    for leftovers in tests.values():  # tests whose implementation is itself placed as a test
        out.extend(leftovers)
    return out


def order_repository(files: dict[str, str], build_files: dict[str, str] | None = None) -> list[str]:
    """The packing order of a repository's files: the dependency-graph part, then the lexical part.

    Args:
        files: path -> text of the files to pack.
        build_files: path -> text of files read only to resolve imports (go.mod, CMakeLists.txt, Makefile).
    """
    graph = dependency_graph(files, build_files)
    connected = {p for p, targets in graph.items() if targets} | {t for targets in graph.values() for t in targets}
    in_graph = graph_order({p: graph[p] & connected for p in graph if p in connected})
    return in_graph + lexical_order([p for p in files if p not in connected])


__all__ = ["break_cycles", "dependency_graph", "graph_order", "lexical_order", "order_repository", "resolve"]
