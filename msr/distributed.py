"""The worker's place in a data-parallel run (torch.distributed), and the few collectives msr needs.

Outside a distributed run every helper is the identity of a one-worker world, so the rest of
msr calls them unconditionally: `shard(rows)` is all the rows, `sum_across(t)` is t.
Workers are started by torch.distributed's elastic launcher (`msr train distributed.nproc_per_node=N`,
or the user's own `torchrun`), which sets RANK, LOCAL_RANK and WORLD_SIZE; this module imports
torch only when a collective is called, so the CLI can ask `is_main()` at start-up.
"""

from __future__ import annotations

import os

_control = None  # a gloo group for small host-side agreements (stop signals) beside a NCCL group


def launched() -> bool:
    """True in a worker that torchrun (or msr through it) started with more than one worker."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    if not launched():
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return int(os.environ.get("RANK", "0")) if launched() else 0


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """Rank 0 writes the run's files; the other workers compute and keep quiet."""
    return rank() == 0


def join(backend: str, timeout: int) -> str:
    """Join the workers' process group (torchrun's env:// rendezvous); the backend chosen."""
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    global _control
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if "OMP_NUM_THREADS" not in os.environ:  # the machine's cores shared by its workers, as joblib jobs share them
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
    _control = dist.new_group(backend="gloo") if backend != "gloo" else None
    return backend


def leave() -> None:
    if active():
        import torch.distributed as dist

        dist.destroy_process_group()


def shard(rows):
    """This worker's contiguous share of `rows` (ordered as given): worker r of N takes
    rows[r*len/N : (r+1)*len/N], so the N shares together are exactly `rows`, in order."""
    n, r = world_size(), rank()
    return rows[len(rows) * r // n : len(rows) * (r + 1) // n]


def sum_across(tensor):
    """The elementwise sum over workers (in place, returned); unchanged in one process."""
    if active():
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def total_across(value) -> float:
    """The sum over workers of a number (or one-element tensor), as a float: a sync."""
    if not active():
        return float(value)
    import torch
    import torch.distributed as dist

    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    total = torch.as_tensor(value, dtype=torch.float64).to(device).reshape(1)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return float(total.item())


def any_across(flag: bool) -> bool:
    """True when any worker's flag is: the workers agree on the host (gloo), with no device sync."""
    if not active():
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([int(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_control)
    return bool(value.item())


def gather_objects(obj) -> list:
    """Every worker's `obj`, by rank (picklable objects: random states)."""
    if not active():
        return [obj]
    import torch.distributed as dist

    objects = [None] * world_size()
    dist.all_gather_object(objects, obj, group=_control)
    return objects


def broadcast_object(obj):
    """Rank 0's `obj` on every worker."""
    if not active():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0, group=_control)
    return box[0]


def barrier() -> None:
    if active():
        import torch.distributed as dist

        dist.barrier(group=_control)
