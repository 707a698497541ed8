"""distributed: data-parallel training across processes through torch.distributed's elastic
launcher (the engine behind torchrun). The names are torchrun's own."""

from __future__ import annotations

from dataclasses import dataclass

from msr.config.base import Validated, positive_ints, require


@dataclass
class DistributedConfig(Validated):
    nproc_per_node: int = 1  # workers on this machine; 1 trains in this process
    nnodes: int = 1  # machines, each starting nproc_per_node workers with the same command
    node_rank: int = 0  # this machine's place among them (0 hosts the rendezvous by default)
    rdzv_endpoint: str = ""  # host:port where the machines meet; empty: this machine, a free port
    rdzv_id: str = ""  # the job's id, the same on every machine; empty: made for a one-machine run
    backend: str = "auto"  # auto (nccl on CUDA, gloo on the CPU) | gloo | nccl
    timeout: int = 300  # seconds to wait for every worker, at the rendezvous and in each collective

    @property
    def workers(self) -> int:
        return self.nproc_per_node * self.nnodes

    def check(self, p: str) -> None:
        positive_ints(self, p, "nproc_per_node", "nnodes", "timeout")
        require(0 <= self.node_rank < self.nnodes, p + "node_rank", self.node_rank,
                f"must be in [0, distributed.nnodes={self.nnodes})")
        require(self.backend in ("auto", "gloo", "nccl"), p + "backend", self.backend, "one of auto, gloo, nccl")
        require(self.nnodes == 1 or bool(self.rdzv_endpoint), p + "rdzv_endpoint", self.rdzv_endpoint,
                "several machines need a meeting point: give host:port of node 0, the same on every machine")
        require(self.nnodes == 1 or bool(self.rdzv_id), p + "rdzv_id", self.rdzv_id,
                "several machines need one job id, the same on each (e.g. $SLURM_JOB_ID)")
