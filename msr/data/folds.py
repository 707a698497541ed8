"""k-fold cross-validation: `data.folds=K data.fold=i` makes fold i of the training split the
validation split, and the other K - 1 folds the training split; the test split stays as it is.

Folds are cut by distinct input, not by row: every copy of an input lands in one fold, so a
repeated input (a task's train split samples with repeats) is never both trained on and
validated on. The distinct inputs are shuffled by the data's own seed before they are dealt
out in turn, so fold sizes differ by at most one input, a sorted file makes no fold of its own
kind, and the same config gives the same folds on every run and every fold of a sweep.
"""

from __future__ import annotations

import logging
import random

from msr.errors import UserError

log = logging.getLogger("msr")


def fold_of_inputs(rows: list[dict], folds: int, seed: int) -> dict[str, int]:
    """Each distinct input of `rows` and the fold (0..folds-1) that holds it."""
    inputs = list(dict.fromkeys(r["input"] for r in rows))  # first-seen order: independent of hashing
    random.Random(seed).shuffle(inputs)
    return {text: position % folds for position, text in enumerate(inputs)}


def fold_splits(raw: dict[str, list[dict]], cfg) -> dict[str, list[dict]]:
    """The splits with train cut into cfg.folds folds: fold cfg.fold becomes val (the data's own
    val split is set aside), the rest stay train, in their order; any other split is unchanged."""
    train = raw["train"]
    distinct = len({r["input"] for r in train})
    if distinct < cfg.folds:
        raise UserError(f"data.folds={cfg.folds}: the training split has only {distinct} distinct inputs; "
                        f"lower data.folds or raise data.train.size")
    fold_of = fold_of_inputs(train, cfg.folds, getattr(cfg, "seed", 0))
    val = [r for r in train if fold_of[r["input"]] == cfg.fold]
    log.info("data %s: fold %d of %d is the val split (%d of the %d training rows)", cfg.name, cfg.fold, cfg.folds,
             len(val), len(train))
    return {"train": [r for r in train if fold_of[r["input"]] != cfg.fold], "val": val,
            **{name: rows for name, rows in raw.items() if name not in ("train", "val")}}
