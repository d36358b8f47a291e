"""Dependencies between maps, the order to sync them in, and how cycles are broken.

A map depends on the maps its lookups reference and on its company map. Initial sync and
catch-up run dependencies first. A cycle (account.primarycontactid -> contact,
contact.parentcustomerid -> account) is broken by writing the records of one map without a
non-required lookup of the cycle first, and patching that lookup once its targets exist:
the "sync twice" workaround of dual-write, computed instead of done by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from core.maps.model import TableMap


@dataclass(frozen=True)
class Edge:
    source: str  # the map that holds the lookup
    target: str  # the map it references
    lookup: str | None  # navigation property; None for the company dependency
    required: bool


@dataclass(frozen=True)
class DeferredLookup:
    map: str
    lookup: str  # navigation property written in the patch pass
    target: str


@dataclass(frozen=True)
class SyncPlan:
    order: tuple[str, ...]  # maps in the order to sync them
    deferred: tuple[DeferredLookup, ...]  # lookups left out of the first pass, patched after
    cycles: tuple[tuple[str, ...], ...]  # every cycle found, broken or not
    unbreakable: tuple[tuple[str, ...], ...] = field(default=())  # cycles of required lookups only

    def deferred_for(self, map_name: str) -> list[str]:
        return [d.lookup for d in self.deferred if d.map == map_name]

    def describe(self) -> list[str]:
        """The plan as numbered steps a person can read."""
        lines = []
        for number, name in enumerate(self.order, 1):
            skipped = self.deferred_for(name)
            suffix = f" (without {', '.join(skipped)}; patched below)" if skipped else ""
            lines.append(f"{number}. sync {name}{suffix}")
        step = len(self.order)
        for deferred in self.deferred:
            step += 1
            lines.append(f"{step}. patch {deferred.map}.{deferred.lookup} -> {deferred.target}")
        return lines


def dependency_edges(maps: Iterable[TableMap]) -> list[Edge]:
    edges: list[Edge] = []
    for table_map in maps:
        if table_map.company is not None:
            edges.append(Edge(table_map.name, table_map.company.map, None, True))
        for lookup in table_map.lookups:
            edges.append(Edge(table_map.name, lookup.map, lookup.dataverse, lookup.required))
    return edges


def _components(nodes: list[str], edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components (Tarjan), each sorted; deterministic for sorted input."""
    successors: dict[str, list[str]] = {n: [] for n in nodes}
    for edge in edges:
        if edge.source in successors and edge.target in successors:
            successors[edge.source].append(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(successors[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            result.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return result


def _cyclic(component: list[str], edges: list[Edge]) -> bool:
    members = set(component)
    return len(component) > 1 or any(e.source == e.target and e.source in members for e in edges)


def find_cycles(names: list[str], edges: list[Edge]) -> list[tuple[str, ...]]:
    return [tuple(c) for c in _components(names, edges) if _cyclic(c, edges)]


def _topological(names: list[str], edges: list[Edge]) -> list[str]:
    """Dependencies first; ties broken by name so the order is stable. Assumes no cycles."""
    pending = {n: {e.target for e in edges if e.source == n and e.target in names and e.target != n}
               for n in names}
    order: list[str] = []
    while pending:
        ready = sorted(n for n, deps in pending.items() if not deps)
        if not ready:  # only if the caller passed a cyclic graph
            ready = [sorted(pending)[0]]
        for name in ready:
            order.append(name)
            del pending[name]
        for deps in pending.values():
            deps.difference_update(ready)
    return order


def plan_sync(maps: Iterable[TableMap]) -> SyncPlan:
    """Order all maps for initial sync, deferring as few optional lookups as break every cycle."""
    map_list = list(maps)
    names = sorted(m.name for m in map_list)
    edges = [e for e in dependency_edges(map_list) if e.target in names]
    cycles = find_cycles(names, edges)
    deferred: list[Edge] = []
    unbreakable: list[tuple[str, ...]] = []
    for cycle in cycles:
        members = set(cycle)
        inside = [e for e in edges if e.source in members and e.target in members]
        optional = sorted((e for e in inside if not e.required), key=lambda e: (e.source, e.lookup or ""))
        kept = [e for e in inside if e.required]
        if find_cycles(list(cycle), kept):
            unbreakable.append(cycle)
            continue
        # Remove every optional edge, then put back each one that does not close a cycle,
        # so only the lookups that must wait are deferred.
        removed = []
        for edge in optional:
            if find_cycles(list(cycle), [*kept, edge]):
                removed.append(edge)
            else:
                kept.append(edge)
        deferred.extend(removed)
    active = [e for e in edges if e not in deferred]
    return SyncPlan(
        order=tuple(_topological(names, active)),
        deferred=tuple(DeferredLookup(e.source, e.lookup or "", e.target) for e in deferred),
        cycles=tuple(cycles),
        unbreakable=tuple(unbreakable),
    )
