"""`listops`: nested list operations, as in ListOps (Nangia & Bowman, 2018).

    "[MAX 2 9 [MIN 4 7 ] 0 ]"  ->  "9"

Operators: MAX, MIN, MED (the median; for an even count, the mean of the two middle values
rounded down) and SM (sum modulo 10), each over 2..max_arity arguments. Steps are the nesting
depth: the innermost list must be reduced before the one around it, and so on outwards. The
scratchpad is each list's value in the order the lists close: "4 , 9" above.

Rewrites: swap_operands (MAX, MIN, MED and SM ignore the order of their arguments) and
perturb_numbers (digits changed, answer recomputed).
"""

from __future__ import annotations

import random

from msr.data.tasks.rewriting import derive, other, shuffled, varied


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


def parse(text: str) -> list:
    """The expression as a tree: [op, arg, ...], each arg a digit (a string) or a sub-list."""
    stack: list[list] = [[]]
    for word in text.split():
        if word.startswith("["):
            stack.append([word[1:]])
            continue
        if len(stack) == 1:  # a "]" or a digit outside any list
            raise ValueError(f"not a ListOps expression: {text!r}")
        if word == "]":
            node = stack.pop()
            stack[-1].append(node)
        else:
            stack[-1].append(word)
    if len(stack) > 1 or len(stack[0]) != 1:
        raise ValueError(f"unbalanced ListOps expression: {text!r}")
    return stack[0][0]


def render(node) -> str:
    """The tree written out as the generator writes it."""
    if isinstance(node, str):
        return node
    return " ".join(["[" + node[0], *(render(arg) for arg in node[1:]), "]"])


def list_values(text: str) -> list[str]:
    """The task's own solver: each list's value in the order the lists close, the whole
    expression's last."""
    values: list[str] = []

    def reduce(node) -> int:
        op, *args = node
        value = REDUCE[op]([int(arg) if isinstance(arg, str) else reduce(arg) for arg in args])
        values.append(str(value))
        return value

    reduce(parse(text))
    return values


def answer(text: str) -> str:
    """The value of the whole expression."""
    return list_values(text)[-1]


def count(steps: int, cfg) -> int:
    """A lower bound on the distinct inputs with this many steps (two arguments per list)."""
    return len(cfg.operators) ** steps * 10 ** (steps + 1)


# ---- rewrites (msr augment) ---------------------------------------------------------------------

def _lists(node):
    yield node
    for arg in node[1:]:
        if isinstance(arg, list):
            yield from _lists(arg)


def _rewritten(record: dict, text: str, recompute: bool) -> dict:
    values = list_values(text)  # moving a sub-list moves its value in the scratchpad
    return derive(record, text, values[-1] if recompute else None, " , ".join(values))


def swap_operands(record, rng, cfg):
    tree = parse(record["input"])
    candidates = [node for node in _lists(tree) if varied(node[1:])]
    if not candidates:
        return None
    node = rng.choice(candidates)
    node[1:] = shuffled(rng, node[1:])
    return _rewritten(record, render(tree), recompute=False)


def perturb_numbers(record, rng, cfg):
    tokens = record["input"].split()
    digits = [i for i, w in enumerate(tokens) if w.isdigit()]
    for i in rng.sample(digits, min(len(digits), rng.randint(1, 2))):
        tokens[i] = str(other(rng, range(10), int(tokens[i])))
    return _rewritten(record, " ".join(tokens), recompute=True)


REWRITES = {"swap_operands": swap_operands, "perturb_numbers": perturb_numbers}
