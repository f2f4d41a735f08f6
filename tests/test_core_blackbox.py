import copy
import pickle

import pytest
import torch

from oral6_core.components import BlackBox
from oral6_core.errors import BlackBoxAccessError
from oral6_core.models.nets import MLP


@pytest.fixture
def box():
    torch.manual_seed(0)
    return BlackBox(MLP(4, 3, (8,)), num_classes=3)


def test_outputs_only_top1_confidence_and_counts_queries(box):
    out = box(torch.randn(5, 4))
    assert out.shape == (5, 3) and not out.requires_grad
    assert ((out > 0).sum(1) == 1).all() and (out.max(1).values > 1 / 3).all()
    box(torch.randn(7, 4))
    assert box.queries == 12


def test_modes():
    net = MLP(4, 3, (8,))
    x = torch.randn(6, 4)
    probs = BlackBox(net, 3, mode="probs")(x)
    assert torch.allclose(probs.sum(1), torch.ones(6))
    labels = BlackBox(net, 3, mode="label")(x)
    assert torch.equal(labels.argmax(1), probs.argmax(1)) and set(labels.unique().tolist()) == {0.0, 1.0}
    top2 = BlackBox(net, 3, mode="topk", k=2)(x)
    assert ((top2 > 0).sum(1) == 2).all()


def test_refuses_parameter_and_gradient_access(box):
    for attempt in (lambda: box.parameters(), lambda: box.state_dict(), lambda: box.model, lambda: box.grad):
        with pytest.raises(BlackBoxAccessError):
            attempt()
    with pytest.raises(AttributeError):
        box.mode = "probs"
    with pytest.raises(BlackBoxAccessError):
        pickle.dumps(box)
    with pytest.raises(BlackBoxAccessError):
        copy.deepcopy(box)
    x = torch.randn(2, 4, requires_grad=True)
    assert box(x).grad_fn is None
