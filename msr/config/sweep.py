"""`sweep.*`: how a multirun (`-m`) treats its jobs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from msr.config.base import Validated, require


@dataclass
class SweepConfig(Validated):
    fail_fast: bool = False  # stop the sweep at the first failed job instead of running the rest
    objective: str = "val/accuracy"  # the metrics.json metric each job is judged by (sweep.jsonl, the summary)
    # maximize | minimize: which objective is better; unset, losses (and the like) minimize
    direction: Optional[str] = None

    def check(self, p: str) -> None:
        require(self.direction in (None, "maximize", "minimize"), p + "direction", self.direction,
                "one of maximize, minimize (or null: inferred from the objective's name)")
