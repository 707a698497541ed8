"""What the tasks' REWRITES share: making the new record, and drawing something different.

A rewrite is `(record, rng, cfg) -> record | None`, cfg being the task's data config. It draws
only from `rng`, never mutates `record`, writes the input exactly as the task's generator would,
and returns None rather than an unchanged input. `msr.augment.operations` gathers them by name.
"""

from __future__ import annotations

import random


def derive(record: dict, text: str, target: str | None = None, scratchpad: str | None = None) -> dict:
    """A new record: the source's keys, a new input, and target/scratchpad where given (a
    scratchpad only if the source had one)."""
    new = dict(record, input=text)
    if target is not None:
        new["target"] = target
    if scratchpad is not None and "scratchpad" in record:
        new["scratchpad"] = scratchpad
    return new


def other(rng: random.Random, choices, old):
    """A random item of `choices` other than `old`, or None if there is none. Rejection
    sampling, since `choices` may be a large vocabulary."""
    if not any(c != old for c in choices):
        return None
    while True:
        pick = rng.choice(choices)
        if pick != old:
            return pick


def varied(items: list) -> bool:
    return any(item != items[0] for item in items)


def shuffled(rng: random.Random, items: list) -> list | None:
    """A random reordering of `items` that differs from it; None if every item is the same."""
    if not varied(items):
        return None
    while True:  # each try repeats the order with probability <= 1/2
        order = rng.sample(items, len(items))
        if order != items:
            return order
