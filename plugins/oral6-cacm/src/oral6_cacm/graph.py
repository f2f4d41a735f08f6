"""Causal graphs given as edge lists, d-separation, and CACM's Phase I conditioning-set search.

Node names: ``Xc`` (the causal object features), ``Y`` (label), ``E`` (environment) and the
dataset's attribute names; any other node is latent unless listed as observed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from oral6_core.errors import ConfigError

CORE, LABEL, ENV = "Xc", "Y", "E"


@dataclass
class CausalGraph:
    """A directed acyclic graph stored as parent sets."""

    parents: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def from_edges(cls, edges: Iterable[str]) -> "CausalGraph":
        """Parse edges written ``"U->V"`` (spaces allowed); a cycle or a malformed edge is a ``ConfigError``."""
        graph = cls()
        for edge in edges:
            parts = [p.strip() for p in edge.split("->")]
            if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
                raise ConfigError(
                    f"Cannot read the graph edge {edge!r}. Write each edge as 'PARENT->CHILD' between two different "
                    f"nodes, e.g. regularizer.graph=['Xc->Y','Y->colour','E->colour']."
                )
            graph.add_edge(*parts)
        graph.check_acyclic()
        return graph

    def add_edge(self, parent: str, child: str) -> None:
        """Add ``parent -> child``."""
        self.parents.setdefault(parent, set())
        self.parents.setdefault(child, set()).add(parent)

    @property
    def nodes(self) -> set[str]:
        return set(self.parents)

    def children(self, node: str) -> set[str]:
        return {c for c, ps in self.parents.items() if node in ps}

    def ancestors(self, nodes: Iterable[str]) -> set[str]:
        """``nodes`` and every node with a directed path into them."""
        seen: set[str] = set()
        stack = list(nodes)
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(self.parents.get(node, ()))
        return seen

    def check_acyclic(self) -> None:
        """Raise ``ConfigError`` naming a node on a directed cycle."""
        state: dict[str, int] = {}

        def visit(node: str) -> None:
            state[node] = 1
            for child in self.children(node):
                if state.get(child) == 1:
                    raise ConfigError(f"The causal graph has a directed cycle through {child!r}; CACM needs a DAG.")
                if child not in state:
                    visit(child)
            state[node] = 2

        for node in sorted(self.parents):
            if node not in state:
                visit(node)

    def d_separated(self, xs: Iterable[str], ys: Iterable[str], given: Iterable[str] = ()) -> bool:
        """X ⊥ Y | Z in every distribution the DAG allows: test by the moralised ancestral graph.

        Keep the ancestors of X ∪ Y ∪ Z, marry parents of a common child, drop directions, delete Z;
        X and Y are d-separated iff no undirected path joins them.
        """
        xs, ys, zs = set(xs), set(ys), set(given)
        unknown = (xs | ys | zs) - self.nodes
        if unknown:
            raise ConfigError(f"The causal graph has no node(s) {sorted(unknown)}; its nodes are {sorted(self.nodes)}.")
        if xs & ys:
            return False
        keep = self.ancestors(xs | ys | zs)
        neighbours: dict[str, set[str]] = {n: set() for n in keep}
        for child in keep:
            parents = self.parents[child] & keep
            for p in parents:
                neighbours[p].add(child)
                neighbours[child].add(p)
            for p, q in itertools.combinations(sorted(parents), 2):
                neighbours[p].add(q)
                neighbours[q].add(p)
        seen = set(xs - zs)
        stack = list(seen)
        while stack:
            node = stack.pop()
            if node in ys:
                return False
            for nxt in neighbours[node] - zs - seen:
                seen.add(nxt)
                stack.append(nxt)
        return True


def conditioning_set(
    graph: CausalGraph, attribute: str, candidates: Sequence[str], always: Sequence[str] = ()
) -> tuple[str, ...]:
    """Phase I: the smallest Z ⊆ ``candidates`` (earlier candidates preferred) with Xc ⊥ A | Z ∪ ``always``.

    ``always`` holds what every constraint conditions on anyway (the environment under per-environment
    grouping, observed selection nodes). Raises ``ConfigError`` when no observed set separates them.
    """
    if CORE not in graph.nodes:
        raise ConfigError(f"The causal graph needs the node {CORE!r} (the causal object features), e.g. '{CORE}->{LABEL}'.")
    if attribute not in graph.nodes:
        raise ConfigError(
            f"The causal graph does not mention attribute {attribute!r}; add its edges (e.g. 'E->{attribute}') "
            f"so CACM can choose its constraint."
        )
    pool = [c for c in candidates if c in graph.nodes and c != attribute]
    fixed = [a for a in always if a in graph.nodes]
    for size in range(len(pool) + 1):
        for subset in itertools.combinations(pool, size):
            if graph.d_separated([CORE], [attribute], [*subset, *fixed]):
                return subset
    raise ConfigError(
        f"No set of observed variables among {pool} d-separates {CORE} from attribute {attribute!r} in the given graph "
        f"(always conditioning on {fixed}), so no independence constraint on the representation is valid for it. "
        f"Check the edges, or leave the attribute out with regularizer.attributes."
    )


def canonical_graph(attribute: str, attribute_type: str) -> CausalGraph:
    """The paper's canonical graph for one attribute of the given type (latent ``C``, selection ``S``)."""
    edges = [f"{CORE}->{LABEL}", f"{CORE}->X", f"{attribute}->X", f"{ENV}->{attribute}"]
    edges += {
        "independent": [],
        "causal": [f"{LABEL}->{attribute}"],
        "confounded": [f"C->{LABEL}", f"C->{attribute}"],
        "selected": [f"{LABEL}->S", f"{attribute}->S"],
    }[attribute_type]
    return CausalGraph.from_edges(edges)
