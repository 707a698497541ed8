"""Draw a task's train/val/test splits so that no input appears in two of them.

The held-out splits are drawn first (test, then val), each without repeats, and train is drawn
from what is left (repeats allowed: it samples the task's distribution). Every split has its
own random stream derived from `data.seed`, so resizing train never changes the test set.
"""

from __future__ import annotations

import random

from msr.data.tasks import TASKS
from msr.errors import UserError

SPLITS = ("train", "val", "test")
_DRAW_ORDER = ("test", "val", "train")
_MAX_TRIES = 1000  # fresh draws per example before the step count is declared exhausted


def generate_splits(cfg) -> dict[str, list[dict]]:
    task = TASKS[cfg.name]
    taken: set[str] = set()
    splits = {}
    for index, name in enumerate(_DRAW_ORDER):
        split = getattr(cfg, name)
        rng = random.Random(cfg.seed * 1_000_003 + index)
        held_out = name != "train"
        records, seen = [], set()
        for _ in range(split.size):
            steps = rng.randint(split.min_steps, split.max_steps)
            for _ in range(_MAX_TRIES):
                record = task.sample(rng, steps, cfg)
                if record["input"] not in taken and not (held_out and record["input"] in seen):
                    break
            else:
                raise UserError(
                    f"data.{name}: cannot draw {split.size} examples: the {task.count(steps, cfg)} "
                    f"inputs with {steps} step(s) are used up by the held-out splits; "
                    f"lower data.val.size/data.test.size or raise data.{name}.min_steps"
                )
            seen.add(record["input"])
            records.append(record)
        if held_out:
            taken |= seen
        splits[name] = records
    return {name: splits[name] for name in SPLITS}
