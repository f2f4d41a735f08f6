"""torch.distributed glue: process-group setup under ``torchrun``, DDP wrapping, rank-agreed values.

Plugins that keep their own state use ``all_reduce_mean_`` (curvature statistics) and
``broadcast_`` (masks from rank 0) so that every rank holds the same state.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn


@dataclass(frozen=True)
class DistInfo:
    """This process's rank and the number of processes."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def local_rank() -> int:
    """``LOCAL_RANK`` set by torchrun (0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def is_active() -> bool:
    """True inside an initialised process group of more than one process."""
    return torch_dist.is_available() and torch_dist.is_initialized() and torch_dist.get_world_size() > 1


def setup(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA); a no-op otherwise."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return DistInfo()
    if not torch_dist.is_initialized():
        use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        if use_cuda:
            torch.cuda.set_device(local_rank())
        torch_dist.init_process_group("nccl" if use_cuda else "gloo")
        atexit.register(_shutdown)
    return DistInfo(torch_dist.get_rank(), torch_dist.get_world_size())


def _shutdown() -> None:
    """Leave the process group before the interpreter exits: tearing down a live gloo group at exit can abort the process."""
    if torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()


def wrap(net: nn.Module, device: torch.device) -> nn.Module:
    """Wrap ``net`` in DistributedDataParallel on ``device``."""
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(net, device_ids=ids)


def all_reduce_mean_(tensor: Tensor) -> Tensor:
    """Average ``tensor`` in place across ranks (identity without a process group)."""
    if is_active():
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
        tensor /= torch_dist.get_world_size()
    return tensor


def broadcast_(tensor: Tensor, src: int = 0) -> Tensor:
    """Overwrite ``tensor`` on every rank with rank ``src``'s value (identity without a process group)."""
    if is_active():
        torch_dist.broadcast(tensor, src)
    return tensor


def mean(value: Tensor) -> float:
    """A scalar averaged over ranks, as a Python float."""
    return all_reduce_mean_(value.detach().clone().float()).item()


def maximum(value: int) -> int:
    """The largest integer ``value`` over ranks (the value itself without a process group)."""
    if not is_active():
        return value
    device = torch.device("cuda", local_rank()) if torch_dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([value], dtype=torch.int64, device=device)
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return int(t.item())


def gather(value: Any) -> list[Any]:
    """``value`` (any picklable object) from every rank, in rank order; ``[value]`` without a process group."""
    if not is_active():
        return [value]
    values: list[Any] = [None] * torch_dist.get_world_size()
    torch_dist.all_gather_object(values, value)
    return values


def agree(value: float, tol: float = 1e-6) -> bool:
    """True when every rank holds the same ``value`` (within ``tol``)."""
    if not is_active():
        return True
    t = torch.tensor([value, -value], dtype=torch.float64)
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return bool(t[0] + t[1] <= tol)
