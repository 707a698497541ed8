"""`arith`: chained arithmetic evaluated left to right, answer modulo `modulus`.

    "7 + 5 * 3 - 2 ="  ->  "4"      (7+5=12, 12*3=36, 36-2=34, 34 mod 10 = 4)

Each operator is one reasoning step: the running value must be carried from one to the next.
The scratchpad is that running value after each step, modulo `modulus`: "2 , 6 , 4".
Operands are digits 0..modulus-1, so with `k` steps there are modulus**(k+1) * len(operators)**k
distinct expressions.
"""

from __future__ import annotations

import random

OPERATIONS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
}


def sample(rng: random.Random, steps: int, cfg) -> dict:
    operands = [rng.randrange(cfg.modulus) for _ in range(steps + 1)]
    operators = [rng.choice(cfg.operators) for _ in range(steps)]
    words = [str(operands[0])]
    for op, x in zip(operators, operands[1:]):
        words += [op, str(x)]
    text = " ".join(words) + " ="
    values = running_values(text, cfg.modulus)
    return {"input": text, "target": values[-1], "steps": steps, "scratchpad": " , ".join(values)}


def running_values(text: str, modulus: int) -> list[str]:
    """The value after each operator, modulo `modulus` (the same as reducing only at the end)."""
    words = text.removesuffix("=").split()
    value, values = int(words[0]), []
    for op, x in zip(words[1::2], words[2::2]):
        value = OPERATIONS[op](value, int(x)) % modulus
        values.append(str(value))
    return values


def answer(text: str, modulus: int) -> str:
    """The task's own checker: evaluate `text` left to right, then reduce modulo `modulus`."""
    words = text.removesuffix("=").split()
    value = int(words[0])
    for op, x in zip(words[1::2], words[2::2]):
        value = OPERATIONS[op](value, int(x))
    return str(value % modulus)


def count(steps: int, cfg) -> int:
    """How many distinct inputs have this many steps."""
    return cfg.modulus ** (steps + 1) * len(cfg.operators) ** steps
