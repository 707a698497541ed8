"""The operations of `msr augment`: each turns one record into a new one, or None.

Three families:
- text: EDA (Wei & Zou, 2019) for free-text data; the target is kept as is, EDA's assumption.
- label_preserving: a built-in task's input rewritten so that its answer cannot change
  (commuted operands, renamed entities, reordered facts, an added distractor); the scratchpad
  is recomputed with the task's solver (for logic, which has none, rewritten alongside).
- recompute: numbers changed, then target and scratchpad recomputed with the task's solver.

The task operations are the tasks' own REWRITES (msr.data.tasks.<task>), gathered here by name;
what every operation must do is said in msr.data.tasks.rewriting.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from msr.data.tasks import TASKS
from msr.data.tasks.rewriting import derive, other
from msr.errors import UserError

P_DELETE = 0.1  # EDA's per-word deletion rate


@dataclass
class Context:
    task: str  # the data config's name; built-in task names select the task ops
    cfg: Any  # the data config (modulus, operators, ...); may be None for free text
    vocabulary: list[str]  # distinct words of the training inputs, sorted


@dataclass(frozen=True)
class Operation:
    name: str
    family: str  # "text" | "label_preserving" | "recompute"
    tasks: tuple[str, ...] | None  # built-in tasks it supports; None: free-text data only
    apply: Callable[[dict, random.Random, Context], dict | None]


# ---- text family (EDA), free text only; whitespace becomes single spaces -------------------

def random_deletion(record, rng, ctx):
    """Drop each word with probability P_DELETE; at least one word goes (an unchanged copy adds
    nothing) and at least one stays."""
    words = record["input"].split()
    if len(words) < 2:
        return None
    kept = [w for w in words if rng.random() >= P_DELETE]
    if len(kept) == len(words):
        del kept[rng.randrange(len(kept))]
    if not kept:  # as EDA: keep one random word rather than return an empty input
        kept = [rng.choice(words)]
    return derive(record, " ".join(kept))


def random_swap(record, rng, ctx):
    """Swap two words that differ."""
    words = record["input"].split()
    if not words:
        return None
    i = rng.randrange(len(words))
    others = [j for j, w in enumerate(words) if w != words[i]]
    if not others:  # every word the same: no swap changes anything
        return None
    j = rng.choice(others)
    words[i], words[j] = words[j], words[i]
    return derive(record, " ".join(words))


def word_replacement(record, rng, ctx):
    """EDA's synonym replacement without a thesaurus (none is available offline): one word is
    replaced by a random other word of the training vocabulary."""
    words = record["input"].split()
    if not words:
        return None
    i = rng.randrange(len(words))
    word = other(rng, ctx.vocabulary, words[i])
    if word is None:
        return None
    words[i] = word
    return derive(record, " ".join(words))


def random_insertion(record, rng, ctx):
    """EDA's random insertion with a random vocabulary word (not a synonym) at a random place."""
    words = record["input"].split()
    if not words or not ctx.vocabulary:
        return None
    words.insert(rng.randint(0, len(words)), rng.choice(ctx.vocabulary))
    return derive(record, " ".join(words))


# ---- the registry ----------------------------------------------------------------------------

# Each task operation's family, in the order msr augment lists them; the tasks say which they support.
TASK_FAMILIES = {
    "swap_operands": "label_preserving",
    "rename_entities": "label_preserving",
    "reorder_facts": "label_preserving",
    "insert_distractor": "label_preserving",
    "perturb_numbers": "recompute",
}


def _task_tables() -> dict[str, dict[str, Callable]]:
    """{operation: {task: rewrite}} from the tasks' REWRITES."""
    for task, module in TASKS.items():
        unknown = set(module.REWRITES) - set(TASK_FAMILIES)
        if unknown:  # a rewrite nobody could ask for: the task and this table disagree
            raise RuntimeError(f"msr.data.tasks.{task} rewrites {sorted(unknown)}, which have no family here")
    return {name: {task: module.REWRITES[name] for task, module in TASKS.items() if name in module.REWRITES}
            for name in TASK_FAMILIES}


def _dispatch(name: str, table: dict) -> Callable:
    def apply(record, rng, ctx):
        if ctx.task not in table:
            check_supported([name], ctx.task)
        return table[ctx.task](record, rng, ctx.cfg)
    return apply


OPERATIONS: dict[str, Operation] = {
    **{f.__name__: Operation(f.__name__, "text", None, f)
       for f in (random_deletion, random_swap, word_replacement, random_insertion)},
    **{name: Operation(name, TASK_FAMILIES[name], tuple(table), _dispatch(name, table))
       for name, table in _task_tables().items()},
}


def supported(task: str) -> list[str]:
    """The operations for this data: the task's own for a built-in task, else the text ones."""
    if task in TASKS:
        return [name for name, op in OPERATIONS.items() if op.tasks and task in op.tasks]
    return [name for name, op in OPERATIONS.items() if op.tasks is None]


def rewrites(rows: list[dict], weights: dict[str, float], ctx: Context, copies: int, seed: int):
    """`copies` rewrites of each row, each by an operation drawn by weight (the data's supported
    ones alike where `weights` is empty); yields (operation, new record or None, row index)."""
    names = list(weights) or supported(ctx.task)
    chances = [weights.get(name, 1.0) for name in names]
    for i, record in enumerate(rows):
        for copy in range(copies):
            rng = random.Random(f"{seed}-{i}-{copy}")  # seeded per example: any one can be redrawn alone
            name = rng.choices(names, chances)[0]
            yield name, OPERATIONS[name].apply(record, rng, ctx), i


def label_preserving(task: str) -> list[str]:
    """The operations that keep this data's answers: the edits an adversarial search may try."""
    return [name for name in supported(task) if OPERATIONS[name].family == "label_preserving"]


def check_supported(names, task: str) -> None:
    """Raise a one-line UserError for the first operation that does not apply to `task`."""
    ok = supported(task)
    for name in names:
        if name not in ok:
            why = "does not exist" if name not in OPERATIONS else f"does not apply to data={task}"
            raise UserError(f"augment operation {name} {why}; for data={task} choose from: {', '.join(ok)}")
