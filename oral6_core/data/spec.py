"""``dataset.toml``: what a user's folder or array file declares about its labels, attributes and causal graph.

::

    classes = ["circle", "square"]          # optional: label names in index order
    environments = ["warm", "cool", "test"] # optional: environment names in order (the stream's order)
    factors = ["label", "size", "colour"]   # optional: ground-truth factors for fit-generative
    [attributes]                            # every attribute column, with its type
    colour = "causal"
    size = { type = "independent", values = ["small", "large"] }
    [graph]                                 # optional: CACM's causal graph
    edges = ["Xc->Y", "Xc->X", "Y->colour", "E->colour", "colour->X", "E->size", "size->X"]
    latent = []                             # unobserved nodes the edges may use (e.g. a confounder C)
    selection = []                          # nodes the data is selected on

Attribute types are CACM's (``independent``, ``causal``, ``confounded``, ``selected``) or ``factor``:
a ground-truth factor with no declared causal role, which CACM leaves alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from ..components import AttributeType
from ..config import load_toml
from ..errors import ConfigError

FACTOR = "factor"
ATTRIBUTE_TYPES = (*get_args(AttributeType), FACTOR)
GRAPH_NODES = ("Y", "Xc", "X", "E")
LABEL_FACTOR = "label"
TOP_LEVEL = {"classes", "environments", "factors", "attributes", "graph"}


@dataclass(frozen=True)
class AttributeSpec:
    """One declared attribute column: its type and, optionally, its values in index order."""

    name: str
    type: str
    values: tuple[str, ...] | None = None


@dataclass
class DatasetSpec:
    """The parsed ``dataset.toml`` (empty when the data has none)."""

    source: Path | None = None
    classes: tuple[str, ...] | None = None
    environments: tuple[str, ...] | None = None
    factors: tuple[str, ...] | None = None
    attributes: dict[str, AttributeSpec] = field(default_factory=dict)
    edges: list[str] = field(default_factory=list)
    latent: list[str] = field(default_factory=list)
    selection: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return str(self.source) if self.source else "the dataset.toml (none was found beside the data)"

    def check_columns(self, columns: list[str], data_file: Path) -> None:
        """Every attribute column of the data must be declared, and every declared attribute present."""
        undeclared = [c for c in columns if c not in self.attributes]
        if undeclared:
            raise ConfigError(
                f"{data_file} has attribute column(s) {undeclared} that {self.where} does not declare. Declare each "
                f"in its attributes table with its type, e.g. {undeclared[0]} = \"independent\" (types: "
                f"{', '.join(ATTRIBUTE_TYPES)})."
            )
        missing = [a for a in self.attributes if a not in columns]
        if missing:
            raise ConfigError(f"{self.where} declares attribute(s) {missing} that {data_file} has no column for.")
        if self.factors is not None:
            unknown = [f for f in self.factors if f != LABEL_FACTOR and f not in self.attributes]
            if unknown:
                raise ConfigError(
                    f"{self.where}: factors {unknown} are neither 'label' nor declared attributes {sorted(self.attributes)}."
                )

    def factor_columns(self) -> list[str]:
        """The ground-truth factors: as declared, else every attribute column."""
        return list(self.factors) if self.factors is not None else list(self.attributes)


def _strings(value: Any, key: str, where: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise ConfigError(f"{where}: {key} must be a list of names, e.g. {key} = [\"a\", \"b\"].")
    names = tuple(str(v) for v in value)
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: {key} lists a name twice: {list(names)}.")
    return names


def _attribute(name: str, value: Any, where: Path) -> AttributeSpec:
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict) or set(value) - {"type", "values"} or "type" not in value:
        raise ConfigError(f"{where}: attribute {name!r} must be a type string or {{ type = \"...\", values = [...] }}.")
    if value["type"] not in ATTRIBUTE_TYPES:
        raise ConfigError(f"{where}: attribute {name!r} has type {value['type']!r}; the types are {', '.join(ATTRIBUTE_TYPES)}.")
    values = _strings(value["values"], f"attributes.{name}.values", where) if "values" in value else None
    return AttributeSpec(name, value["type"], values)


def _edges(value: Any, where: Path) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: graph.edges must be a list of 'PARENT->CHILD' strings.")
    pairs = []
    for edge in value:
        parts = [p.strip() for p in str(edge).split("->")]
        if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
            raise ConfigError(f"{where}: cannot read the graph edge {edge!r}; write 'PARENT->CHILD' between two different nodes.")
        pairs.append((parts[0], parts[1]))
    return pairs


def find_cycle(pairs: list[tuple[str, str]]) -> list[str] | None:
    """A directed cycle of the edge list as a node path (first node repeated at the end), or ``None``."""
    children: dict[str, list[str]] = {}
    for parent, child in pairs:
        children.setdefault(parent, []).append(child)
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for child in children.get(node, []):
            if state.get(child) == 1:
                return path[path.index(child):] + [child]
            if child not in state and (found := visit(child)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(children):
        if node not in state and (found := visit(node)):
            return found
    return None


def _graph(value: Any, attributes: dict[str, AttributeSpec], where: Path) -> tuple[list[str], list[str], list[str]]:
    if not isinstance(value, dict) or set(value) - {"edges", "latent", "selection"}:
        raise ConfigError(f"{where}: the graph table takes only edges, latent and selection.")
    pairs = _edges(value.get("edges", []), where)
    latent = list(_strings(value.get("latent", []), "graph.latent", where))
    selection = list(_strings(value.get("selection", []), "graph.selection", where))
    known = {*GRAPH_NODES, *attributes, *latent, *selection}
    for parent, child in pairs:
        for node in (parent, child):
            if node not in known:
                raise ConfigError(
                    f"{where}: the graph edge '{parent}->{child}' uses the unknown node {node!r}. The nodes are Y (label), "
                    f"Xc (causal features), X (image), E (environment), the attributes {sorted(attributes)}, and the "
                    f"nodes listed in graph.latent or graph.selection."
                )
    cycle = find_cycle(pairs)
    if cycle:
        raise ConfigError(f"{where}: the causal graph has a directed cycle {' -> '.join(cycle)}; it must be acyclic.")
    return [f"{p}->{c}" for p, c in pairs], latent, selection


def read_spec(path: Path | None) -> DatasetSpec:
    """Parse and check ``path`` (``None`` or absent: an empty spec)."""
    if path is None or not path.is_file():
        return DatasetSpec()
    data = load_toml(path)
    unknown = set(data) - TOP_LEVEL
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; the keys are {', '.join(sorted(TOP_LEVEL))}.")
    raw_attrs = data.get("attributes", {})
    if not isinstance(raw_attrs, dict):
        raise ConfigError(f"{path}: the attributes table must map each attribute column to its type.")
    attributes = {name: _attribute(name, value, path) for name, value in raw_attrs.items()}
    edges, latent, selection = _graph(data.get("graph", {}), attributes, path)
    pick = lambda key: _strings(data[key], key, path) if key in data else None  # noqa: E731
    return DatasetSpec(path, pick("classes"), pick("environments"), pick("factors"), attributes, edges, latent, selection)
