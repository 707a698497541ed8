"""Curricula over reasoning steps: the rows each training batch may be drawn from.

At level L the batches come from the training rows with at most L steps. Each level has its own
`BatchOrder` over its rows, so batch k is a pure function of (seed, level, k): `linear` makes the
level a function of the step, `mastery` saves it with the checkpoint, and a resumed run draws the
batches an uninterrupted one would have.
"""

from __future__ import annotations

import logging

import torch

from msr.data.batching import BatchOrder
from msr.errors import UserError

log = logging.getLogger("msr")


class Curriculum:
    def __init__(self, cfg, train_steps: torch.Tensor, val_steps: torch.Tensor, trainer_cfg, seed: int):
        self.cfg, self.steps, self.seed = cfg, train_steps, seed
        self.batch_size, self.micro_batches = trainer_cfg.batch_size, trainer_cfg.grad_accum_steps
        self.active = cfg.name != "none"
        self.orders: dict[int, tuple[torch.Tensor | None, BatchOrder]] = {}
        self.top = int(train_steps.max()) if len(train_steps) else -1
        self.ramp = cfg.fraction * trainer_cfg.max_steps if cfg.name == "linear" else 0.0
        if not self.active:
            self.level = self.top
            return
        unknown = int((train_steps < 0).sum())
        if unknown:
            raise UserError(f"curriculum={cfg.name} orders examples by their steps, but {unknown} of "
                            f"{len(train_steps):,} training examples have none; use curriculum=none")
        if cfg.start > self.top:
            raise UserError(f"curriculum.start={cfg.start} is above the training split's most steps ({self.top}): "
                            f"lower curriculum.start or raise data.train.max_steps")
        self.level = max(cfg.start, int(train_steps.min()))  # below the fewest steps, a level holds nothing
        if cfg.name == "mastery":
            have = set(val_steps.tolist())
            missing = [level for level in range(self.level, self.top) if level not in have]
            if missing:
                raise UserError(f"curriculum=mastery advances on validation accuracy at each level, but the "
                                f"validation split has no example with {missing[0]} steps: give it every step "
                                f"count from {self.level} to {self.top - 1} (data.val.min_steps, data.val.max_steps)")

    def __call__(self, k: int) -> torch.Tensor:
        """Batch k of the data order (optimizer step k // grad_accum_steps, counted from 0)."""
        step = k // self.micro_batches
        if self.ramp:
            self.move_to(min(self.top, self.cfg.start + int((self.top - self.cfg.start) * step / self.ramp)), step)
        rows, order = self.order(self.level)
        return order(k) if rows is None else rows[order(k)]

    def order(self, level: int) -> tuple[torch.Tensor | None, BatchOrder]:
        if level not in self.orders:
            rows = None if level >= self.top else torch.nonzero(self.steps <= level).squeeze(1)
            size = len(self.steps) if rows is None else len(rows)  # the whole split: the order without a curriculum
            self.orders = {level: (rows, BatchOrder(size, self.batch_size, self.seed))}  # one level at a time
        return self.orders[level]

    def evaluated(self, result: dict, step: int) -> None:
        """mastery: one level up once validation accuracy at the current level (`result["by_steps"]`)
        reaches the threshold (a sampled evaluation without rows at that level decides nothing)."""
        if self.cfg.name != "mastery" or self.level >= self.top:
            return
        accuracy = result["by_steps"].get(str(self.level))
        if accuracy is not None and accuracy >= self.cfg.threshold:
            self.move_to(self.level + 1, step)

    def move_to(self, level: int, step: int) -> None:
        if level != self.level:
            self.level = level
            rows, _ = self.order(level)
            size = len(self.steps) if rows is None else len(rows)
            log.info("curriculum: from step %d, examples with at most %d steps (%s of %s rows)", step, level,
                     f"{size:,}", f"{len(self.steps):,}")

    def logged(self) -> dict:
        """What history.jsonl (and TensorBoard) records of the curriculum."""
        return {"curriculum/max_steps": self.level} if self.active else {}

    def state_dict(self) -> dict:
        return {"level": self.level} if self.active else {}

    def load_state_dict(self, state: dict | None) -> None:
        if self.active and state:
            self.level = state["level"]
