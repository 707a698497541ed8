"""The worker's place in a data-parallel run (torch.distributed), and the few collectives msr needs.

Outside a distributed run every helper is the identity of a one-worker world, so the rest of
msr calls them unconditionally: `shard(rows)` is all the rows, `sum_across(t)` is t.
Workers are started by torch.distributed's elastic launcher (`msr train distributed.nproc_per_node=N`,
or the user's own `torchrun`), which sets RANK, LOCAL_RANK and WORLD_SIZE.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

_control = None  # a gloo group for small host-side agreements (stop signals) beside a NCCL group


def launched() -> bool:
    """True in a worker that torchrun (or msr through it) started with more than one worker."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 writes the run's files; the other workers compute and keep quiet."""
    return rank() == 0


def shard(rows: torch.Tensor) -> torch.Tensor:
    """This worker's contiguous share of `rows` (ordered as given): worker r of N takes
    rows[r*len/N : (r+1)*len/N], so the N shares together are exactly `rows`, in order."""
    n, r = world_size(), rank()
    return rows[len(rows) * r // n : len(rows) * (r + 1) // n]


def sum_across(tensor: torch.Tensor) -> torch.Tensor:
    """The elementwise sum over workers (in place, returned); unchanged in one process."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_across(flag: bool) -> bool:
    """True when any worker's flag is: the workers agree without a device sync (gloo, on the host)."""
    if not active():
        return flag
    value = torch.tensor([int(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_control)
    return bool(value.item())


def gather_objects(obj) -> list:
    """Every worker's `obj`, by rank (picklable objects: random states, error lines)."""
    if not active():
        return [obj]
    objects = [None] * world_size()
    dist.all_gather_object(objects, obj, group=_control)
    return objects


def broadcast_object(obj):
    """Rank 0's `obj` on every worker."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=_control)
    return box[0]


def barrier() -> None:
    if active():
        dist.barrier(group=_control)
