"""The black-box server process: builds the source model itself and answers raw-byte queries.

``BlackBoxServer`` (in ``oral6_core.blackbox``) starts ``python -c "...; main()" FD`` with one end
of a socket pair. ``main`` first ties its life to the parent's (before importing torch), reads one
JSON start message (plus the target's test split as raw bytes), builds the source model, replies
with its accuracy report, then answers requests until it is closed, its pipe ends or its parent
dies. Requests are parsed from a fixed header and raw float32 data; nothing is unpickled.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import signal
import struct
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from torch import nn

    from .blackbox import SourceSpec, TargetCheck
    from .data import DataBundle


def _harden(parent_pid: int) -> None:
    """Die with the parent; ignore Ctrl-C (the parent stops us); refuse ptrace and memory reads by non-root peers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: killed the moment the parent exits
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0: ptrace and /proc/PID/mem then need CAP_SYS_PTRACE
    if os.getppid() != parent_pid:
        os._exit(0)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def build_source(spec: "SourceSpec", target: "TargetCheck | None" = None) -> tuple["nn.Module", "DataBundle", str]:
    """The source model (trained, or loaded from ``spec.checkpoint``), its dataset and the dataset's name.

    ``target`` is checked against the source's shapes before any training.
    """
    from . import registry
    from .config import RunConfig, TrainConfig
    from .training import build_model, fit, load_trained_model, resolve_device, seed_everything

    device = resolve_device(spec.device)
    if spec.checkpoint is not None:
        model, run = load_trained_model(spec.checkpoint)  # type: ignore[arg-type]
        name = run.get("dataset", "digits")
        bundle = registry.create("dataset", name, (run.get("options") or {}).get("dataset")).load(seed=spec.seed)
        _check_target(name, bundle, target)
        return model.to(device).eval(), bundle, name
    bundle = registry.create("dataset", spec.dataset, spec.dataset_options).load(seed=spec.seed)
    _check_target(spec.dataset, bundle, target)
    seed_everything(spec.seed)
    model = build_model(RunConfig(model=spec.model, dataset=spec.dataset, options={"model": dict(spec.model_options)}), bundle)
    train = TrainConfig(epochs=spec.epochs, seed=spec.seed, device=spec.device, progress=False, checkpoint=False)
    fit(model, bundle, registry.create("optimizer", "adam", {"lr": spec.lr}), train)
    return model.to(device).eval(), bundle, spec.dataset


def _check_target(source: str, bundle: "DataBundle", target: "TargetCheck | None") -> None:
    from .errors import ShapeError

    if target is not None and (tuple(bundle.input_shape) != tuple(target.input_shape) or bundle.num_classes != target.num_classes):
        raise ShapeError(
            f"Source {source!r} gives inputs {tuple(bundle.input_shape)} with {bundle.num_classes} classes, target "
            f"{target.name!r} gives {tuple(target.input_shape)} with {target.num_classes}: a black box trained on one "
            "cannot label the other."
        )


def _source_report(model: "nn.Module", bundle: "DataBundle", target: "TargetCheck | None") -> dict[str, Any]:
    """What the owner may know about the source model: its accuracy on its own test split and on the target's."""
    import torch

    from .data import ArrayDataset
    from .metrics import evaluate

    device = next(iter(model.parameters()), torch.empty(0)).device
    split = bundle.test if bundle.test is not None else bundle.val
    report: dict[str, Any] = {"num_classes": bundle.num_classes, "input_shape": list(bundle.input_shape),
                              "source_accuracy_on_source": None, "source_accuracy_on_target": None}
    if split is not None:
        report["source_accuracy_on_source"] = evaluate(model, split, bundle.task, device)["accuracy"]
    if target is not None and target.test_x is not None and target.test_y is not None:
        test = ArrayDataset(torch.from_numpy(target.test_x), torch.from_numpy(target.test_y))
        report["source_accuracy_on_target"] = evaluate(model, test, bundle.task, device)["accuracy"]
    return report


class _State:
    """The server's private state: the model, the mode, k, the budget and the count of samples answered."""

    def __init__(self, model: "nn.Module", bundle: "DataBundle", mode: str, k: int, budget: int | None) -> None:
        import torch

        self.model, self.mode, self.k, self.budget = model, mode, k, budget
        self.input_shape, self.num_classes = tuple(bundle.input_shape), bundle.num_classes
        self.device = next(iter(model.parameters()), torch.empty(0)).device
        self.queries = 0

    def query(self, message: bytes, ndim: int) -> bytes:
        """Check a raw query against the input shape, its data length and the budget; the reduced answers as bytes."""
        import numpy as np
        import torch

        from .blackbox import ANSWER, REQUEST, answer
        from .errors import BlackBoxBudgetError, BlackBoxQueryError

        expected = f"[N, {', '.join(map(str, self.input_shape))}]"
        start = REQUEST.size + 4 * ndim
        if ndim != 1 + len(self.input_shape) or len(message) < start:
            raise BlackBoxQueryError(f"A query must be shaped {expected}.")
        dims = struct.unpack(f"<{ndim}I", message[REQUEST.size:start])
        if tuple(dims[1:]) != self.input_shape:
            raise BlackBoxQueryError(f"A query must be shaped {expected}, not {list(dims)}.")
        rows = dims[0]
        if len(message) - start != 4 * rows * math.prod(self.input_shape):
            raise BlackBoxQueryError(f"A query of {rows} samples must carry exactly {rows} float32 samples of data.")
        if self.budget is not None and self.queries + rows > self.budget:
            raise BlackBoxBudgetError(
                f"The black box's query budget of {self.budget} samples is spent ({self.queries} answered); "
                f"a query of {rows} more was refused."
            )
        x = torch.from_numpy(np.frombuffer(message, dtype=np.float32, offset=start).reshape(rows, *self.input_shape).copy())
        out = answer(self.model, x, self.device, self.mode, self.k, self.num_classes).numpy()
        self.queries += rows
        return ANSWER.pack(rows, self.num_classes) + out.tobytes()

    def stats(self) -> bytes:
        return json.dumps({"queries": self.queries, "mode": self.mode, "k": self.k, "budget": self.budget}).encode()


def _error_body(exc: BaseException) -> bytes:
    from .errors import Oral6Error

    if isinstance(exc, Oral6Error):
        return json.dumps({"error": type(exc).__name__, "message": str(exc)}).encode()
    message = f"The black-box server failed while building or running the source model: {type(exc).__name__}: {exc}"
    return json.dumps({"error": "BlackBoxServerError", "message": message}).encode()


def _read_start(conn: "Connection") -> tuple["SourceSpec", str, int, int | None, "TargetCheck | None", int]:
    """The start message: spec, mode, k, budget, target check (its test split as raw bytes) and thread count."""
    import numpy as np

    from .blackbox import SourceSpec, TargetCheck

    start = json.loads(conn.recv_bytes())
    spec = SourceSpec(**start["spec"])
    target = None
    if start["target"] is not None:
        t = start["target"]
        shape, x, y = tuple(t["input_shape"]), None, None
        if t["rows"] is not None:
            x = np.frombuffer(conn.recv_bytes(), dtype=np.float32).reshape(t["rows"], *shape).copy()
            y = np.frombuffer(conn.recv_bytes(), dtype=np.int64).copy()
        target = TargetCheck(t["name"], shape, int(t["num_classes"]), x, y)
    return spec, start["mode"], int(start["k"]), start["budget"], target, int(start["threads"])


def _loop(conn: "Connection", state: _State) -> None:
    """Answer requests until CLOSE, EOF or a broken pipe; a bad request gets an error reply, never a crash."""
    from .blackbox import CLOSE, ERROR, JSON, MAGIC, QUERY, REQUEST, STATS, TENSOR, reply
    from .errors import BlackBoxQueryError

    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        request_id = 0
        try:
            if len(message) < REQUEST.size:
                raise BlackBoxQueryError("A black-box request is too short to read.")
            magic, operation, request_id, ndim = REQUEST.unpack_from(message)
            if magic != MAGIC:
                raise BlackBoxQueryError("A black-box request must start with the protocol's header.")
            if operation == QUERY:
                reply(conn, TENSOR, request_id, state.query(message, ndim))
            elif operation == STATS:
                reply(conn, JSON, request_id, state.stats())
            elif operation == CLOSE:
                reply(conn, JSON, request_id, state.stats())
                return
            else:
                raise BlackBoxQueryError(f"Unknown black-box request {operation}: a black box answers queries and reports its count.")
        except (EOFError, OSError):
            return
        except Exception as exc:
            try:
                reply(conn, ERROR, request_id, _error_body(exc))
            except (EOFError, OSError):
                return


def main() -> None:
    """Entry point of the server process: ``argv[1]`` is the socket's fd, ``argv[2]`` the parent's pid."""
    _harden(int(sys.argv[2]))
    from multiprocessing.connection import Connection

    import torch

    from .blackbox import ERROR, JSON, reply

    conn = Connection(int(sys.argv[1]))
    try:
        spec, mode, k, budget, target, threads = _read_start(conn)
        torch.set_num_threads(threads)
        model, bundle, source = build_source(spec, target)
        report = {"source": source, **_source_report(model, bundle, target)}
        state = _State(model, bundle, mode, k, budget)
        del bundle, target
    except (EOFError, OSError):
        return
    except BaseException as exc:  # every failure goes back to the owner as one message
        try:
            reply(conn, ERROR, 0, _error_body(exc))
        except (EOFError, OSError):
            pass
        return
    reply(conn, JSON, 0, json.dumps(report).encode())
    _loop(conn, state)
    os._exit(0)  # nothing to clean up; skip the interpreter's slow teardown
