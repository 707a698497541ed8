"""The random streams training draws from (dropout; the data order has its own, from the seed
and the step), saved in checkpoints and restored on resume, one per worker in a data-parallel run."""

from __future__ import annotations

import logging
import random

import torch

from msr import distributed

log = logging.getLogger("msr")


def rng_state() -> dict:
    """Every random stream training draws from (dropout; the data order has its own)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def worker_rng() -> dict:
    """In a data-parallel run, every worker's random streams (by rank) for the checkpoint."""
    return {"worker_rng": distributed.gather_objects(rng_state())} if distributed.world_size() > 1 else {}


def worker_streams(saved: dict | None, seed: int, step: int) -> None:
    """Each worker's dropout stream: its own saved one on a resume with as many workers (rank 0's
    is the run's `rng`, already set); else, with several workers, one derived from the run seed,
    the worker and the step: a fresh run, or a resume with another number of workers, which keeps
    the global batch order but changes these streams (said once)."""
    workers, saved_streams = distributed.world_size(), (saved or {}).get("worker_rng")
    if saved is not None and len(saved_streams or [None]) == workers:
        if saved_streams:
            set_rng_state(saved_streams[distributed.rank()])
        return
    if saved is not None and distributed.is_main():
        log.warning("resuming with %d workers where the checkpoint had %d: the batches are the same, the "
                    "per-worker dropout streams are new", workers, len(saved_streams or [None]))
    if workers > 1:
        worker = seed * 1_000_003 + 7_919 * step + distributed.rank()
        torch.manual_seed(worker)
        random.seed(worker)
