"""A mixture of built-in tasks (data=mixture): each task's splits drawn as the task alone draws
them, at its share of the mixture's sizes, then tagged with the task and interleaved.

How the configs compose: Hydra cannot build a defaults list from a value (data.tasks), so the
mixture's schema holds one sub-config per built-in task, named as the task (data.arith is an
ArithConfig with its own defaults); data.tasks only says which of them are drawn. A task's
split sizes are set here from the mixture's (MixtureConfig.rows: size * weight / sum, by largest
remainder), so each task's cache entry (msr.data.generated) is its own setting at that size,
and its inputs never repeat across its own splits. The presentation (template, scratchpad) is
the mixture's, applied to every row by load_data, and one vocabulary is built over all of them.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from msr.data.generated import load_generated
from msr.data.splits import SPLITS, draw


def task_configs(cfg) -> dict:
    """The drawn tasks' configs (weight > 0), their split sizes set to their shares of the mixture's."""
    rows = {split: cfg.rows(split) for split in SPLITS}
    return {task: replace(getattr(cfg, task), **{split: replace(getattr(getattr(cfg, task), split),
                                                                 size=rows[split][task]) for split in SPLITS})
            for task, weight in zip(cfg.tasks, cfg.task_weights()) if weight > 0}


def load_mixture(cfg, cache: Path, exclude: set[str] | None = None, split: str = "test") -> tuple[dict, int]:
    """({split: rows, each with its `task`}, candidates redrawn for `exclude`). With `exclude`,
    only `split`, each task's part drawn around the excluded inputs as load_data does for a task;
    the interleaving depends on the split's name alone, so an unchanged draw keeps its order."""
    per_task, excluded = {}, 0
    for task, task_cfg in task_configs(cfg).items():
        if exclude is None:
            per_task[task] = {name: table.to_list() for name, table in load_generated(task_cfg, cache).items()}
        else:
            drawn = draw(task_cfg, exclude, until=split)
            per_task[task], excluded = {split: drawn.splits[split]}, excluded + drawn.excluded
    names = SPLITS if exclude is None else (split,)
    return {name: interleave(cfg.seed, name, {t: splits[name] for t, splits in per_task.items()})
            for name in names}, excluded


def interleave(seed: int, split: str, rows_by_task: dict[str, list[dict]]) -> list[dict]:
    """Every task's rows tagged with the task, in one seeded order (its own stream per split, so
    resizing train leaves the test order alone): batches and test prints mix the tasks."""
    rows = [{**row, "task": task} for task, rows in rows_by_task.items() for row in rows]
    random.Random(seed * 1_000_003 + SPLITS.index(split)).shuffle(rows)
    return rows
