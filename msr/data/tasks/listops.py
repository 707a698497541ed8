"""`listops`: nested list operations, as in ListOps (Nangia & Bowman, 2018).

    "[MAX 2 9 [MIN 4 7 ] 0 ]"  ->  "9"

Operators: MAX, MIN, MED (the median; for an even count, the mean of the two middle values
rounded down) and SM (sum modulo 10), each over 2..max_arity arguments. Steps are the nesting
depth: the innermost list must be reduced before the one around it, and so on outwards. The
scratchpad is each list's value in the order the lists close: "4 , 9" above.
"""

from __future__ import annotations

import random

def median(xs: list[int]) -> int:
    """The middle value; for an even count, the mean of the two middle values rounded down."""
    ordered = sorted(xs)
    return (ordered[(len(ordered) - 1) // 2] + ordered[len(ordered) // 2]) // 2


REDUCE = {
    "MAX": max,
    "MIN": min,
    "MED": median,
    "SM": lambda xs: sum(xs) % 10,
}


def sample(rng: random.Random, steps: int, cfg) -> dict:
    text = " ".join(_tree(rng, steps, cfg))
    values = list_values(text)
    return {"input": text, "target": values[-1], "steps": steps, "scratchpad": " , ".join(values)}


def _tree(rng: random.Random, depth: int, cfg) -> list[str]:
    """A list of exactly `depth` nesting levels: one argument carries the deepest branch,
    the others are digits or, with probability cfg.subtree_prob, shallower lists."""
    arity = rng.randint(2, cfg.max_arity)
    deepest = rng.randrange(arity)
    words = ["[" + rng.choice(cfg.operators)]
    for i in range(arity):
        if i == deepest and depth > 1:
            words += _tree(rng, depth - 1, cfg)
        elif depth > 1 and rng.random() < cfg.subtree_prob:
            words += _tree(rng, rng.randint(1, depth - 1), cfg)
        else:
            words.append(str(rng.randrange(10)))
    return words + ["]"]


def list_values(text: str) -> list[str]:
    """The task's own solver: reduce each list when its closing bracket arrives; the values in
    that order, the whole expression's last."""
    stack: list[list] = []
    values = []
    for word in text.split():
        if word.startswith("["):
            stack.append([word[1:]])
        elif word == "]":
            op, *args = stack.pop()
            value = REDUCE[op](args)
            values.append(str(value))
            if not stack:
                return values
            stack[-1].append(value)
        else:
            stack[-1].append(int(word))
    raise ValueError(f"unbalanced ListOps expression: {text!r}")


def answer(text: str) -> str:
    """The value of the whole expression."""
    return list_values(text)[-1]


def count(steps: int, cfg) -> int:
    """A lower bound on the distinct inputs with this many steps (two arguments per list)."""
    return len(cfg.operators) ** steps * 10 ** (steps + 1)
