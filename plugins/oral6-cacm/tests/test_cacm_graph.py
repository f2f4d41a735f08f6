"""d-separation and Phase I conditioning sets on the canonical graphs and on user-given graphs."""

import pytest

from oral6_cacm.constraints import CONSTRAINT_TABLE
from oral6_cacm.graph import CausalGraph, canonical_graph, conditioning_set
from oral6_core.errors import ConfigError


def test_d_separation_of_chain_fork_and_collider():
    chain = CausalGraph.from_edges(["A->B", "B->C"])
    assert not chain.d_separated(["A"], ["C"]) and chain.d_separated(["A"], ["C"], ["B"])
    fork = CausalGraph.from_edges(["B->A", "B->C"])
    assert not fork.d_separated(["A"], ["C"]) and fork.d_separated(["A"], ["C"], ["B"])
    collider = CausalGraph.from_edges(["A->B", "C->B", "B->D"])
    assert collider.d_separated(["A"], ["C"])
    assert not collider.d_separated(["A"], ["C"], ["B"])
    assert not collider.d_separated(["A"], ["C"], ["D"])  # conditioning on a collider's descendant opens it


@pytest.mark.parametrize("attribute_type", ["independent", "causal", "confounded", "selected"])
def test_canonical_graphs_give_the_papers_conditioning_sets(attribute_type):
    graph = canonical_graph("A", attribute_type)
    always = ["S"] if attribute_type == "selected" else []
    for with_env in (False, True):
        given = conditioning_set(graph, "A", ["Y"], always + (["E"] if with_env else []))
        assert given == CONSTRAINT_TABLE[attribute_type]


def test_conditioning_set_can_include_other_attributes():
    # Xc -> Y -> B -> A: A is separated from Xc by B alone (smallest set), or by Y.
    graph = CausalGraph.from_edges(["Xc->Y", "Y->B", "B->A", "Xc->X", "A->X"])
    assert conditioning_set(graph, "A", ["B", "Y"]) == ("B",)
    assert conditioning_set(graph, "A", ["Y", "B"]) == ("Y",)


def test_graph_errors_are_clear():
    with pytest.raises(ConfigError, match="cycle"):
        CausalGraph.from_edges(["A->B", "B->A"])
    with pytest.raises(ConfigError, match="PARENT->CHILD"):
        CausalGraph.from_edges(["A-B"])
    with pytest.raises(ConfigError, match="does not mention attribute"):
        conditioning_set(CausalGraph.from_edges(["Xc->Y"]), "colour", ["Y"])
    # a latent confounder of Xc and A leaves no observed separating set
    with pytest.raises(ConfigError, match="No set of observed variables"):
        conditioning_set(CausalGraph.from_edges(["U->Xc", "U->A", "Xc->Y"]), "A", ["Y"])
