"""The black box an adapter queries: a source model that lives in its own process.

``BlackBoxServer(spec)`` starts a separate Python process (``oral6_core.blackbox_server``) that
builds the source model itself: it trains it from a registered dataset and model builder, or
loads an ``oral6 train`` checkpoint. The adapter's process holds only a ``BlackBoxClient``: one
end of a socket pair, the number of classes and the input shape. Requests and answers cross as a
fixed binary header plus raw float32 bytes, never as pickles, so nothing an adapter sends can run
code in the server. Answers are reduced to the configured mode (probabilities, top-k, label)
inside the server; mode, k, the query count and the query budget exist only there.

``InProcessBlackBox`` wraps a model held in the caller's own process. It offers no isolation (any
code in that process can reach the model) and serves unit tests and the cost baseline only.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field
from multiprocessing import connection
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from . import errors
from .errors import BlackBoxAccessError, BlackBoxQueryError, BlackBoxServerError, ConfigError

if TYPE_CHECKING:
    from .data import DataBundle

BlackBoxMode = Literal["probs", "topk", "label"]

MAGIC = b"O6BB"
REQUEST = struct.Struct("<4sBQB")  # magic, operation, request id, number of dimensions (then one u32 per dimension)
REPLY = struct.Struct("<4sBQ")  # magic, status, request id
ANSWER = struct.Struct("<II")  # rows, classes (then rows·classes float32)
QUERY, STATS, CLOSE = 1, 2, 3
TENSOR, JSON, ERROR = 0, 1, 2
_SERVER_BATCH = 4096


def reply(conn: connection.Connection, status: int, request_id: int, body: bytes) -> None:
    """Send one reply: header, then the body (answers, JSON or an error)."""
    conn.send_bytes(REPLY.pack(MAGIC, status, request_id) + body)


# --------------------------------------------------------------------------- what every box shares


class BlackBox:
    """What an adapter is handed: ``box(x)`` answers a batch of inputs; nothing else of the source model.

    ``num_classes`` and ``input_shape`` say what it labels; ``queries``, ``mode``, ``k`` and
    ``budget`` report its state. Modes: ``probs`` (the full softmax), ``topk`` (the k largest
    probabilities, the rest zero; k = 1 is "top-1 label and its confidence"), ``label`` (one-hot).
    """

    __slots__ = ()
    num_classes: int
    input_shape: tuple[int, ...]

    def __call__(self, x: Tensor) -> Tensor:
        """Answers ``[N, num_classes]`` (float32, no grad) on ``x``'s device for a plain tensor ``[N, *input_shape]``."""
        raise NotImplementedError

    @property
    def queries(self) -> int:
        """Samples answered so far."""
        raise NotImplementedError

    @property
    def mode(self) -> str:
        raise NotImplementedError

    @property
    def k(self) -> int:
        raise NotImplementedError

    @property
    def budget(self) -> int | None:
        """Most samples the box answers in all (None: unlimited)."""
        raise NotImplementedError

    def parameters(self) -> Any:
        raise BlackBoxAccessError("A BlackBox hides its parameters and gradients; only its outputs can be queried.")

    def __getattr__(self, name: str) -> Any:
        raise BlackBoxAccessError(f"A BlackBox exposes only its outputs (call it on inputs); {name!r} is not available.")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("A BlackBox is read-only.")

    def __reduce__(self) -> Any:
        raise BlackBoxAccessError("A BlackBox cannot be pickled or copied.")


def check_mode(mode: str, k: int) -> None:
    """Refuse an unknown mode or a k below 1."""
    if mode not in ("probs", "topk", "label"):
        raise ConfigError(f"Unknown black-box mode {mode!r}; use probs, topk or label.")
    if k < 1:
        raise ConfigError(f"The black box's k must be at least 1, not {k}.")


def check_query(x: Any, input_shape: tuple[int, ...]) -> Tensor:
    """``x`` as a detached, contiguous float32 CPU tensor; refuses anything but a plain dense floating tensor."""
    if type(x) is not torch.Tensor:
        raise BlackBoxQueryError(
            f"A black box answers plain torch.Tensor inputs only, not {type(x).__module__}.{type(x).__qualname__} "
            "(tensor subclasses and tensor-like objects are refused); pass a plain tensor, e.g. p.detach() for an nn.Parameter p."
        )
    if x.layout != torch.strided or x.is_quantized or x.is_nested or x.device.type == "meta":
        raise BlackBoxQueryError("A black box answers dense tensors holding values, not sparse, nested, quantized or meta tensors.")
    if not x.dtype.is_floating_point:
        raise BlackBoxQueryError(f"A black box answers floating-point inputs, not {x.dtype}; convert with x.float().")
    if x.dim() != 1 + len(input_shape) or tuple(x.shape[1:]) != tuple(input_shape):
        raise BlackBoxQueryError(
            f"The black box takes inputs of shape [N, {', '.join(map(str, input_shape))}], not {list(x.shape)}."
        )
    return x.detach().to("cpu", torch.float32).contiguous()


def reduceanswer(probs: Tensor, mode: str, k: int) -> Tensor:
    """The softmax ``probs`` cut down to what ``mode`` reveals."""
    if mode == "probs":
        return probs
    top = 1 if mode == "label" else min(k, probs.shape[-1])
    values, indices = probs.topk(top, dim=-1)
    if mode == "label":
        values = torch.ones_like(values)
    return torch.zeros_like(probs).scatter_(-1, indices, values)


@torch.no_grad()
def answer(model: nn.Module, x: Tensor, device: torch.device, mode: str, k: int, num_classes: int) -> Tensor:
    """The reduced answers of ``model`` over ``x`` (CPU, float32), batch by batch."""
    if x.shape[0] == 0:
        return torch.zeros(0, num_classes)
    probs = torch.cat([model(chunk.to(device)).float().softmax(-1).cpu() for chunk in x.split(_SERVER_BATCH)])
    return reduceanswer(probs, mode, k)


# --------------------------------------------------------------------------- in-process (no isolation)


class InProcessBlackBox(BlackBox):
    """A model in the caller's own process behind the BlackBox interface: no isolation (tests and baselines only)."""

    __slots__ = ("_model", "_device", "_mode", "_k", "_queries", "num_classes", "input_shape")

    def __init__(self, model: nn.Module, num_classes: int, input_shape: tuple[int, ...], mode: BlackBoxMode = "topk", k: int = 1) -> None:
        check_mode(mode, k)
        init = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        init("_model", model.eval())
        init("_device", next(iter(model.parameters()), torch.empty(0)).device)
        init("_mode", mode)
        init("_k", k)
        init("_queries", 0)
        init("num_classes", num_classes)
        init("input_shape", tuple(input_shape))

    def __call__(self, x: Tensor) -> Tensor:
        plain = check_query(x, self.input_shape)
        out = answer(self._model, plain, self._device, self._mode, self._k, self.num_classes)
        object.__setattr__(self, "_queries", self._queries + plain.shape[0])
        return out.to(x.device)

    @property
    def queries(self) -> int:
        return self._queries

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def k(self) -> int:
        return self._k

    @property
    def budget(self) -> int | None:
        return None


# --------------------------------------------------------------------------- what the owner sends


@dataclass(frozen=True)
class SourceSpec:
    """How the server builds the source model: train it (dataset, model, epochs, lr, seed) or load ``checkpoint``.

    Only these plain values leave the adapter's process. With ``checkpoint`` (an ``oral6 train``
    checkpoint) the model, dataset and options come from the checkpoint's run description.
    """

    dataset: str = "digits"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    model: str = "cnn"
    model_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 15
    lr: float = 2e-3
    seed: int = 0
    device: str = "cpu"
    checkpoint: str | None = None


@dataclass(frozen=True)
class TargetCheck:
    """What the target domain looks like, so the server can refuse a source that cannot label it, and score it."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    test_x: np.ndarray | None = None
    test_y: np.ndarray | None = None


# --------------------------------------------------------------------------- the owner's side


class _Channel:
    """The owner's end of the pipe: numbered requests (one at a time), replies matched by number, liveness checked while waiting."""

    def __init__(self, conn: connection.Connection, process: subprocess.Popen, timeout: float) -> None:
        self.conn, self.process, self.timeout = conn, process, timeout
        self.ids = itertools.count(1)
        self.lock = threading.Lock()

    def dead(self) -> BlackBoxServerError:
        try:
            code: int | None = self.process.wait(0.5)
        except subprocess.TimeoutExpired:
            code = None
        how = "closed its pipe" if code is None else f"exited with code {code}"
        return BlackBoxServerError(
            f"The black-box server (pid {self.process.pid}) {how}: it crashed or was stopped, so it cannot answer "
            "and its query count is lost. Rerun; its own error, if any, is printed above."
        )

    def receive(self, request_id: int, timeout: float | None) -> tuple[int, bytes]:
        """The reply to ``request_id`` (stale replies skipped); a clear error when the server died or timed out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if connection.wait([self.conn], 0.5):
                try:
                    message = self.conn.recv_bytes()
                except (EOFError, OSError):
                    raise self.dead() from None
                magic, status, reply_id = REPLY.unpack_from(message)
                if magic != MAGIC or reply_id != request_id:
                    continue
                body = message[REPLY.size:]
                if status == ERROR:
                    raise _rebuild_error(body)
                return status, body
            if self.process.poll() is not None:
                raise self.dead()
            if deadline is not None and time.monotonic() >= deadline:
                raise BlackBoxServerError(
                    f"The black-box server (pid {self.process.pid}) gave no answer within {timeout:g} s; "
                    "send smaller queries or give BlackBoxServer a longer timeout."
                )

    def send(self, message: bytes) -> None:
        try:
            self.conn.send_bytes(message)
        except (EOFError, OSError, ValueError):
            raise self.dead() from None

    def request(self, operation: int, dims: tuple[int, ...] = (), payload: bytes = b"") -> tuple[int, bytes]:
        with self.lock:
            request_id = next(self.ids)
            self.send(REQUEST.pack(MAGIC, operation, request_id, len(dims)) + struct.pack(f"<{len(dims)}I", *dims) + payload)
            return self.receive(request_id, self.timeout)

    def stats(self) -> dict[str, Any]:
        return json.loads(self.request(STATS)[1])


def _rebuild_error(body: bytes) -> errors.Oral6Error:
    """The server's error as the same ``Oral6Error`` class (``BlackBoxServerError`` for anything else)."""
    data = json.loads(body)
    kind = getattr(errors, str(data.get("error")), None)
    if not (isinstance(kind, type) and issubclass(kind, errors.Oral6Error)):
        kind = BlackBoxServerError
    return kind(data.get("message", "The black-box server failed."))


class BlackBoxClient(BlackBox):
    """The adapter's handle on a ``BlackBoxServer``: sends plain tensors, returns the server's reduced answers."""

    __slots__ = ("_channel", "num_classes", "input_shape")

    def __init__(self, channel: _Channel, num_classes: int, input_shape: tuple[int, ...]) -> None:
        object.__setattr__(self, "_channel", channel)
        object.__setattr__(self, "num_classes", num_classes)
        object.__setattr__(self, "input_shape", tuple(input_shape))

    def __call__(self, x: Tensor) -> Tensor:
        plain = check_query(x, self.input_shape)
        _, body = self._channel.request(QUERY, tuple(plain.shape), plain.numpy().tobytes())
        rows, classes = ANSWER.unpack_from(body)
        values = np.frombuffer(body, dtype=np.float32, offset=ANSWER.size).reshape(rows, classes)
        return torch.from_numpy(values.copy()).to(x.device)

    @property
    def queries(self) -> int:
        return int(self._channel.stats()["queries"])

    @property
    def mode(self) -> str:
        return str(self._channel.stats()["mode"])

    @property
    def k(self) -> int:
        return int(self._channel.stats()["k"])

    @property
    def budget(self) -> int | None:
        return self._channel.stats()["budget"]


def _stop(conn: connection.Connection, process: subprocess.Popen) -> None:
    """Ask the server to close; terminate, then kill it if it does not exit."""
    try:
        conn.send_bytes(REQUEST.pack(MAGIC, CLOSE, 0, 0))
    except (EOFError, OSError, ValueError):
        pass
    for stop in (lambda: None, process.terminate, process.kill):
        stop()
        try:
            process.wait(2.0)
            break
        except subprocess.TimeoutExpired:
            continue
    conn.close()


def _start_message(spec: SourceSpec, mode: str, k: int, budget: int | None, target: TargetCheck | None) -> list[bytes]:
    """The JSON start message, then the target's test inputs and labels as raw bytes."""
    rows = None if target is None or target.test_x is None or target.test_y is None else len(target.test_x)
    check = None if target is None else {"name": target.name, "input_shape": list(target.input_shape),
                                         "num_classes": target.num_classes, "rows": rows}
    start = {"spec": asdict(spec), "mode": mode, "k": k, "budget": budget, "threads": torch.get_num_threads(), "target": check}
    messages = [json.dumps(start, default=str).encode()]
    if rows is not None:
        messages += [np.ascontiguousarray(target.test_x, dtype=np.float32).tobytes(),  # type: ignore[union-attr]
                     np.ascontiguousarray(target.test_y, dtype=np.int64).tobytes()]  # type: ignore[union-attr]
    return messages


class BlackBoxServer:
    """Starts the source model's own process and owns it; ``client`` is what an adapter gets.

    ``with BlackBoxServer(spec, mode="topk", k=1) as server: adapter.adapt(server.client, ...)``.
    The server process builds the model itself, exits when closed, on pipe EOF and when this
    process dies (Linux: at once; elsewhere within half a second); a crashed server raises
    ``BlackBoxServerError`` at the next request. ``report`` holds the source model's accuracy on
    its own test split and on ``target``'s; ``queries`` is the server's count. POSIX only.
    """

    def __init__(self, spec: SourceSpec, mode: str = "topk", k: int = 1, budget: int | None = None,
                 target: TargetCheck | None = None, timeout: float = 600.0) -> None:
        check_mode(mode, k)
        if budget is not None and budget < 0:
            raise ConfigError(f"A query budget must be a number of samples ≥ 0, not {budget}.")
        mine, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        process = subprocess.Popen(
            [sys.executable, "-c", "from oral6_core.blackbox_server import main; main()", str(theirs.fileno()), str(os.getpid())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        theirs.close()
        conn = connection.Connection(mine.detach())
        self._channel = _Channel(conn, process, timeout)
        self._finalizer = weakref.finalize(self, _stop, conn, process)
        try:
            for message in _start_message(spec, mode, k, budget, target):
                self._channel.send(message)
            report = json.loads(self._channel.receive(0, None)[1])
        except BaseException:
            self.close()
            raise
        self.report: dict[str, Any] = report
        self.client = BlackBoxClient(self._channel, int(report["num_classes"]), tuple(report["input_shape"]))

    @property
    def pid(self) -> int:
        return int(self._channel.process.pid)

    @property
    def queries(self) -> int:
        """The server's own count of samples answered."""
        return int(self._channel.stats()["queries"])

    def close(self) -> None:
        """Stop the server (idempotent)."""
        self._finalizer()

    def __enter__(self) -> "BlackBoxServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def target_check(bundle: "DataBundle") -> TargetCheck:
    """A ``TargetCheck`` of a target bundle: its shapes and its labelled test split as plain arrays."""
    from .data import BatchLoader

    if bundle.test is None:
        return TargetCheck(bundle.name, tuple(bundle.input_shape), bundle.num_classes)
    batches = list(BatchLoader(bundle.test, 1024))
    return TargetCheck(bundle.name, tuple(bundle.input_shape), bundle.num_classes,
                       torch.cat([torch.as_tensor(b.x) for b in batches]).float().numpy().copy(),
                       torch.cat([torch.as_tensor(b.y) for b in batches]).long().numpy().copy())


__all__ = ["BlackBox", "BlackBoxClient", "BlackBoxMode", "BlackBoxServer", "InProcessBlackBox", "SourceSpec",
           "TargetCheck", "answer", "check_mode", "check_query", "reduce_answer", "target_check"]
