"""Draw a task's train/val/test splits so that no input appears in two of them.

The held-out splits are drawn first (test, then val), each without repeats, and train is drawn
from what is left (repeats allowed: it samples the task's distribution). Every split has its
own random stream derived from `data.seed`, so resizing train never changes the test set.

`msr evaluate` draws held-out splits again with other settings: `exclude` then holds every
input the evaluated runs trained or were selected on, and a candidate among them is redrawn.
Drawing the same settings with their own training inputs excluded gives the same test set,
since none of its candidates was ever in them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from msr.data.tasks import TASKS
from msr.errors import UserError

SPLITS = ("train", "val", "test")
_DRAW_ORDER = ("test", "val", "train")
_MAX_TRIES = 1000  # fresh draws per example before the step count is declared exhausted


@dataclass
class Drawn:
    splits: dict[str, list[dict]]
    excluded: int = 0  # candidates redrawn because they were in `exclude`


def generate_splits(cfg) -> dict[str, list[dict]]:
    return draw(cfg).splits


def draw(cfg, exclude: frozenset[str] | set[str] = frozenset(), until: str = "train") -> Drawn:
    """The splits in draw order up to and including `until` (train: all three), none of
    whose held-out inputs is in `exclude`."""
    task = TASKS[cfg.name]
    taken: set[str] = set(exclude)
    splits, excluded = {}, 0
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
                excluded += record["input"] in exclude
            else:
                used = "by the held-out splits" + (" and the evaluated runs' training data" if exclude else "")
                raise UserError(
                    f"data.{name}: cannot draw {split.size} examples: the {task.count(steps, cfg)} "
                    f"inputs with {steps} step(s) are used up {used}; "
                    f"lower data.{name}.size or raise data.{name}.min_steps"
                )
            seen.add(record["input"])
            records.append(record)
        if held_out:
            taken |= seen
        splits[name] = records
        if name == until:
            break
    return Drawn({name: splits[name] for name in SPLITS if name in splits}, excluded)
