"""Data-parallel runs: start the workers, give them one run folder, and end the run as one.

`msr train distributed.nproc_per_node=N ...` starts N copies of the same command through
torch.distributed's elastic launcher (the engine behind torchrun); a user's own
`torchrun ... $(which msr) train ...`, or one `msr train distributed.nnodes=M ...` per machine,
starts them too. Every worker runs Hydra and the command; rank 0, on whichever machine the
rendezvous put it, claims the run folder and hands it to the others, and only it writes the
run's files (msr.runs.RunDir.writes). A worker that fails leaves its error in msr.log and in
worker_errors.jsonl, from which rank 0 records the run as failed, although the launcher stops
it with SIGTERM.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from msr import distributed
from msr.errors import UserError

WORKER_ERRORS = "worker_errors.jsonl"


def launch_workers(argv: list[str], cfg) -> int:
    """Run `msr <argv>` as cfg.workers workers (this machine's share of them); their exit code."""
    import uuid

    # The launcher's connection retries print C++ warnings and stack frames before giving up;
    # msr says in one line what happened. Read once, when torch loads; the workers get the user's.
    quiet = "TORCH_CPP_LOG_LEVEL" not in os.environ
    if quiet:
        os.environ["TORCH_CPP_LOG_LEVEL"] = "FATAL"
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if quiet:
        del os.environ["TORCH_CPP_LOG_LEVEL"]
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # msr says what happened
    config = LaunchConfig(
        min_nodes=cfg.nnodes, max_nodes=cfg.nnodes, nproc_per_node=cfg.nproc_per_node,
        run_id=cfg.rdzv_id or f"msr-{uuid.uuid4().hex[:12]}", rdzv_backend="c10d",
        rdzv_endpoint=cfg.rdzv_endpoint or "localhost:0",  # one machine: a free port, as torchrun --standalone
        rdzv_configs={"timeout": cfg.timeout, "join_timeout": cfg.timeout, "read_timeout": cfg.timeout,
                      "is_host": cfg.node_rank == 0},
        max_restarts=0, monitor_interval=0.1)
    try:
        elastic_launch(config, sys.executable)("-m", "msr.cli", *argv)
    except ChildFailedError as failed:
        codes = [f.exitcode for f in failed.failures.values()]
        return next((c for c in (2, 130, 143) if c in codes), 1)  # a user error, Ctrl-C, SIGTERM, else a crash
    except SignalException as sig:  # the launcher was stopped: it passed the signal on and waited for the workers
        return 128 + int(sig.sigval)
    except RendezvousError as err:
        raise UserError(f"the workers did not meet at distributed.rdzv_endpoint={config.rdzv_endpoint} within "
                        f"distributed.timeout={cfg.timeout} s ({type(err).__name__}); check the endpoint is "
                        f"node 0's host:port and every machine started") from None
    return 0


def join_run(cfg, claim) -> list[str]:
    """In a worker: join the process group; rank 0 places the run (`claim()`, the overrides that
    put it in its folder) and every worker gets the same. The others leave Hydra's .hydra/ files
    to rank 0 (identical, and written at the same moment otherwise)."""
    try:
        distributed.join(cfg.backend, cfg.timeout)
    except (RuntimeError, ValueError) as err:
        raise UserError(f"this worker could not join the others (distributed.backend={cfg.backend}): "
                        f"{str(err).splitlines()[0]}") from None
    placed = distributed.broadcast_object(claim() if distributed.is_main() else None)
    return placed if distributed.is_main() else [*placed, "hydra.output_subdir=null"]


class RankPrefix(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = f"[rank {distributed.rank()}] {record.msg}"
        return True


def quiet_worker() -> None:
    """A worker other than rank 0 logs only its warnings and errors (to the console and msr.log),
    each line naming its rank; rank 0 logs the run."""
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
    logging.getLogger("msr").addFilter(RankPrefix())


def note_failure(folder: Path, reason: str) -> None:
    """A worker other than rank 0 failed: say so where rank 0 looks when it is stopped."""
    from msr.sweeps import append_line

    append_line(Path(folder) / WORKER_ERRORS, json.dumps({"rank": distributed.rank(), "error": reason}) + "\n")


def peer_failure(folder: Path, wait: float = 1.0) -> str | None:
    """Why the run failed when another worker did: the first failure it noted (rank 0 is then
    stopped by the launcher, or by the broken collective; the note may be a moment behind)."""
    import time

    path = Path(folder) / WORKER_ERRORS
    deadline = time.monotonic() + (wait if distributed.launched() else 0)
    while not path.is_file():
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)
    first = json.loads(path.read_text().splitlines()[0])
    return f"worker {first['rank']} of {distributed.world_size()} failed: {first['error']}"
