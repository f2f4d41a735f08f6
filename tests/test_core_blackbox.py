"""The black box served from its own process: every attack that once reached the source model now fails.

The source model is an MLP whose hidden layer has a width no other test uses (37), so anything
shaped like it in this process would be the source model; each search is first shown to find an
in-process model, so a search that cannot find anything would fail here.
"""

from __future__ import annotations

import copy
import gc
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import time
from typing import Any, Iterator

import pytest
import torch
from torch import nn

from oral6_core import registry, workflows
from oral6_core.blackbox import MAGIC, QUERY, REQUEST, STATS, BlackBoxClient, BlackBoxServer, InProcessBlackBox, SourceSpec
from oral6_core.blackbox_server import build_source
from oral6_core.components import Adapter, BlackBox
from oral6_core.data import ArrayDataset, DataBundle
from oral6_core.hookspecs import hookimpl
from oral6_core.io import save_torch
from oral6_core.metrics import evaluate
from oral6_core.errors import BlackBoxAccessError, BlackBoxBudgetError, BlackBoxQueryError, BlackBoxServerError

WIDTH = 37
SPEC = SourceSpec("digits", {}, "mlp", {"hidden": [WIDTH]}, epochs=1, lr=2e-3, seed=0, device="cpu")
BUDGET = 5000


@pytest.fixture(scope="module")
def server() -> Iterator[BlackBoxServer]:
    torch.set_num_threads(1)
    with BlackBoxServer(SPEC, mode="label", budget=BUDGET) as running:
        yield running


@pytest.fixture(scope="module")
def in_process() -> InProcessBlackBox:
    """A model of the source's architecture held in this process: the positive control of every search."""
    model = registry.create("model", "mlp", {"hidden": [WIDTH]}).build((1, 8, 8), 10)
    return InProcessBlackBox(model, 10, (1, 8, 8), mode="label")


def is_source_like(obj: Any, width: int = WIDTH) -> bool:
    """A layer or weight shaped like the source model's hidden layer."""
    if issubclass(type(obj), nn.Linear):
        return width in (obj.in_features, obj.out_features)
    return type(obj) in (torch.Tensor, nn.Parameter) and width in tuple(obj.shape)


def walk(root: Any, limit: int = 20000) -> list[Any]:
    """Everything reachable from ``root`` through referents, slots, closures and ``__wrapped__`` (not through modules or classes)."""
    seen, queue, found = {id(root)}, [root], []
    while queue and len(seen) < limit:
        obj = queue.pop()
        found.append(obj)
        nxt = list(gc.get_referents(obj))
        for name in getattr(type(obj), "__slots__", ()):
            try:
                nxt.append(object.__getattribute__(obj, name))
            except AttributeError:
                pass
        nxt += [cell.cell_contents for cell in (getattr(obj, "__closure__", None) or ()) if cell.cell_contents is not None]
        nxt += [vars(obj)["__wrapped__"]] if "__wrapped__" in getattr(obj, "__dict__", {}) else []
        for item in nxt:
            if id(item) not in seen and not isinstance(item, (type, type(os))):
                seen.add(id(item))
                queue.append(item)
    return found


def raw_request(client: BlackBoxClient, operation: int, dims: tuple[int, ...], payload: bytes) -> Any:
    """Bypass the client's checks: send a hand-made request over its own pipe and read the reply."""
    channel = object.__getattribute__(client, "_channel")
    return channel.request(operation, dims, payload)


# --------------------------------------------------------------------------- what the box answers


def test_answers_are_reduced_in_the_server_and_returned_on_the_callers_device(server):
    before = server.queries
    x = torch.randn(6, 1, 8, 8, requires_grad=True)
    out = server.client(x)
    assert out.shape == (6, 10) and out.dtype == torch.float32 and not out.requires_grad and out.device == x.device
    assert set(out.unique().tolist()) == {0.0, 1.0} and (out.sum(1) == 1).all(), "label mode: one-hot"
    assert server.queries == before + 6 and server.client.queries == before + 6
    assert (server.client.mode, server.client.k, server.client.budget) == ("label", 1, BUDGET)
    assert server.report["source"] == "digits" and 0 < server.report["source_accuracy_on_source"] <= 1


def test_modes_match_the_in_process_box(in_process):
    x = torch.randn(9, 1, 8, 8)
    model = object.__getattribute__(in_process, "_model")
    probs = InProcessBlackBox(model, 10, (1, 8, 8), mode="probs")(x)
    assert torch.allclose(probs.sum(1), torch.ones(9))
    top2 = InProcessBlackBox(model, 10, (1, 8, 8), mode="topk", k=2)(x)
    assert ((top2 > 0).sum(1) == 2).all() and torch.equal(top2.argmax(1), probs.argmax(1))
    assert torch.equal(in_process(x).argmax(1), probs.argmax(1))


def test_refuses_parameter_and_gradient_access_and_copies(server):
    client = server.client
    assert isinstance(client, BlackBox)
    for attempt in (client.parameters, lambda: client.state_dict(), lambda: client.model, lambda: client._forward):
        with pytest.raises(BlackBoxAccessError):
            attempt()
    for attempt in (lambda: pickle.dumps(client), lambda: copy.deepcopy(client)):
        with pytest.raises(BlackBoxAccessError):
            attempt()


def test_query_budget_lives_in_the_server_and_exceeding_it_is_a_clear_error(server):
    spent = server.queries
    with pytest.raises(BlackBoxBudgetError, match="budget of 5000"):
        server.client(torch.zeros(BUDGET - spent + 1, 1, 8, 8))
    assert server.queries == spent, "a refused query is not counted"
    server.client(torch.zeros(2, 1, 8, 8))
    assert server.queries == spent + 2


# --------------------------------------------------------------------------- the attacks


def test_closure_walk_reaches_no_model(server, in_process):
    functions = [f for cls in type(server.client).__mro__ for f in vars(cls).values()]
    functions += [p.fget for p in functions if isinstance(p, property)]
    reached = [obj for f in functions for obj in walk(f, 2000)]
    assert not any(is_source_like(obj) for obj in reached)
    assert any(is_source_like(obj) for obj in walk(in_process)), "control: the walk finds an in-process model"


def test_slots_and_object_getattribute_reach_no_model_and_hold_no_mode_or_count(server, in_process):
    client = server.client
    held = {name: object.__getattribute__(client, name) for name in type(client).__slots__}
    assert set(held) == {"_channel", "num_classes", "input_shape"}, "mode, k and the count are not on the client"
    assert not any(is_source_like(obj) for value in held.values() for obj in walk(value))
    control = [object.__getattribute__(in_process, name) for name in type(in_process).__slots__]
    assert any(is_source_like(obj) for value in control for obj in walk(value))


def test_gc_get_referents_reaches_no_model(server, in_process):
    reached = walk(server.client)
    assert len(reached) > 10 and not any(isinstance(obj, nn.Module) or is_source_like(obj) for obj in reached)
    assert any(is_source_like(obj) for obj in walk(in_process))


def test_tensor_subclass_input_is_refused(server):
    seen: list[str] = []

    class Spy(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            seen.append(getattr(func, "__name__", str(func)))
            return super().__torch_function__(func, types, args, kwargs or {})

    before = server.queries
    x = torch.randn(4, 1, 8, 8)
    for attempt in (x.as_subclass(Spy), nn.Parameter(x)):
        with pytest.raises(BlackBoxQueryError, match="plain torch.Tensor"):
            server.client(attempt)
    assert seen == [] and server.queries == before
    out = server.client(x.clone().requires_grad_())
    assert out.grad_fn is None and not out.requires_grad, "no gradient ever crosses back"
    for bad, match in ((torch.zeros(4, 1, 8, 8, dtype=torch.int64), "floating-point"), (torch.zeros(4, 64), "shape")):
        with pytest.raises(BlackBoxQueryError, match=match):
            server.client(bad)


def test_object_setattr_on_mode_k_and_count_changes_nothing(server):
    client = server.client
    before = server.queries
    for name, value in (("_mode", "probs"), ("mode", "probs"), ("_k", 10), ("_queries", 0), ("queries", -5)):
        with pytest.raises(AttributeError):
            object.__setattr__(client, name, value)
    with pytest.raises(AttributeError):
        client.mode = "probs"
    out = client(torch.randn(3, 1, 8, 8))
    assert set(out.unique().tolist()) == {0.0, 1.0}, "still label-only"
    assert server.queries == before + 3 and client.mode == "label" and client.k == 1
    with pytest.raises(BlackBoxQueryError, match="Unknown black-box request"):
        raw_request(client, 9, (), b"")  # there is no request that sets anything
    assert server.queries == before + 3


def test_fake_shape_does_not_bypass_the_count(server):
    class FakeShape:
        shape = (0, 1, 8, 8)

        def __array__(self, dtype=None):
            return torch.randn(5, 1, 8, 8).numpy()

    client = server.client
    before = server.queries
    with pytest.raises(BlackBoxQueryError):
        client(FakeShape())
    data = torch.randn(5, 1, 8, 8).numpy().tobytes()
    with pytest.raises(BlackBoxQueryError, match="exactly 0"):
        raw_request(client, QUERY, (0, 1, 8, 8), data)  # a header claiming no samples, carrying five
    with pytest.raises(BlackBoxQueryError, match="shaped"):
        raw_request(client, QUERY, (5, 64), data)
    assert server.queries == before
    raw_request(client, QUERY, (5, 1, 8, 8), data)
    assert server.queries == before + 5
    channel = object.__getattribute__(client, "_channel")
    channel.send(struct.pack("<4s", b"JUNK"))  # a reply nobody reads; the next request still gets its own answer
    channel.send(REQUEST.pack(MAGIC, STATS, 999, 0))
    assert server.queries == before + 5


class GcProbe(Adapter):
    """Searches the whole process and the caller's frames for the source model and data (test only)."""

    name = "test-gc-probe"
    found: dict[str, list[str]] = {}

    def adapt(self, black_box, target_data, student):
        mine = {id(obj) for obj in [*student.modules(), *student.parameters(), *student.buffers()]}
        frames, frame = [], sys._getframe(0)
        while frame is not None:
            frames += list(frame.f_locals.values())
            frame = frame.f_back
        GcProbe.found = scan([*gc.get_objects(), *frames], mine)
        black_box(target_data.x[:4])
        return student


class ProbePlugin:
    @hookimpl
    def oral6_adapters(self):
        return [GcProbe]


SOURCE_DATA = {"num_samples": 777, "data_seed": 1}
GC_WIDTH = 41


def scan(objects: list[Any], exclude: set[int]) -> dict[str, list[str]]:
    """Layers and weights shaped like the source's (hidden width 41), and data sized like its splits (777 samples: 544/78/155)."""
    model = [type(o).__name__ for o in objects if id(o) not in exclude and is_source_like(o, GC_WIDTH)]
    sizes = {544, 78, 155}
    data = [type(o).__name__ for o in objects if (type(o) is ArrayDataset and len(o) in sizes)
            or (type(o) is DataBundle and len(o.train) in sizes)]  # type: ignore[arg-type]
    return {"model": model, "data": data}


def test_gc_get_objects_finds_no_source_model_or_data_in_the_callers_frames(register_plugin, tmp_path):
    """``oral6 adapt`` with ``--source-checkpoint``: the server loads the file; nothing of it is in this process."""
    torch.set_num_threads(1)
    spec = SourceSpec("synthetic", SOURCE_DATA, "mlp", {"hidden": [GC_WIDTH]}, epochs=1, seed=0)
    control_model, control_bundle, _ = build_source(spec)
    control = scan(gc.get_objects(), set())
    assert control["model"] and control["data"], "control: the scan finds an in-process source model and its data"
    accuracy = evaluate(control_model, control_bundle.test, control_bundle.task)["accuracy"]
    run = {"model": "mlp", "dataset": "synthetic", "options": {"dataset": SOURCE_DATA, "model": {"hidden": [GC_WIDTH]}}}
    save_torch({"model": control_model.state_dict(), "run": run}, tmp_path / "source.pt")
    del control_model, control_bundle
    gc.collect()
    register_plugin(ProbePlugin(), "test-gc-probe")
    report = workflows.adapt("test-gc-probe", "", "synthetic", "mlp", "mlp", 1, 2e-3, "topk", 1, 0, "cpu",
                             {"target": {"num_samples": 500}, "model": {"hidden": [GC_WIDTH]}}, None,
                             source_checkpoint=tmp_path / "source.pt")
    assert GcProbe.found == {"model": [], "data": []}
    assert report["source_accuracy_on_source"] == pytest.approx(accuracy), "the server serves exactly the checkpoint"
    assert report["black_box_queries"] == 4 and report["source_accuracy_on_target"] is not None


# --------------------------------------------------------------------------- lifetime and failures


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killing_the_owner_with_sigkill_leaves_no_orphan_server():
    script = textwrap.dedent(f"""
        import time, torch
        from oral6_core.blackbox import BlackBoxServer, SourceSpec
        torch.set_num_threads(1)
        server = BlackBoxServer(SourceSpec("digits", {{}}, "mlp", {{"hidden": [8]}}, epochs=1))
        print(server.pid, flush=True)
        time.sleep(120)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        pid = int(owner.stdout.readline())  # type: ignore[union-attr]
        assert not _gone(pid)
        owner.kill()
        owner.wait(10)
        deadline = time.monotonic() + 5
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(pid), "the server outlived its owner"
    finally:
        owner.kill()


def test_a_crashed_server_is_a_clear_error_not_a_hang(server):
    """Kills the module's shared server, so it stays the last test that uses it."""
    server.client(torch.zeros(1, 1, 8, 8))
    os.kill(server.pid, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(BlackBoxServerError, match="crashed or was stopped"):
        server.client(torch.zeros(1, 1, 8, 8))
    with pytest.raises(BlackBoxServerError):
        server.queries  # noqa: B018
    assert time.monotonic() - started < 5
    server.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_server_answers_cuda_inputs_on_cuda():
    with BlackBoxServer(SourceSpec("digits", {}, "mlp", {"hidden": [8]}, epochs=1, device="cuda"), mode="probs") as running:
        x = torch.randn(5, 1, 8, 8, device="cuda")
        out = running.client(x)
        assert out.device == x.device and torch.allclose(out.sum(1), torch.ones(5, device="cuda"))
        assert running.queries == 5
