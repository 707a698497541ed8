"""`arith`: chained arithmetic evaluated left to right, answer modulo `modulus`.

    "7 + 5 * 3 - 2 ="  ->  "4"      (7+5=12, 12*3=36, 36-2=34, 34 mod 10 = 4)

Each operator is one reasoning step: the running value must be carried from one to the next.
The scratchpad is that running value after each step, modulo `modulus`: "2 , 6 , 4".
Operands are digits 0..modulus-1, so with `k` steps there are modulus**(k+1) * len(operators)**k
distinct expressions.

With `index_hints` (Zhou et al., 2023, "What algorithms can Transformers learn?") each operator
follows a letter, a random subset of A-Z in alphabetical order, and each scratchpad value follows
its operator's letter:

    "7 B + 5 G * 3 H - 2 ="  ->  scratchpad "B 2 , G 6 , H 4"

so a step finds its operator and operand by content (the letter after the last one written)
rather than by counting: the lookup is the same at every length. Training on short expressions
still shows every letter, in every place. With `hint_letters=consecutive` the letters are a run
from a random start ("D E F G"): the next one is the alphabet's next, whatever the length.

With `scratchpad_operands` the scratchpad walks the input: the first operand, then each step
copied (hint, operator, operand) with its value, then the "=" that ends the input:

    "7 B + 5 G * 3 H - 2 ="  ->  scratchpad "7 , B + 5 2 , G * 3 6 , H - 2 4 , ="

so every token is a copy (what follows the last copied token in the input, found by content) or
a function of tokens at fixed distances behind it (the value: the one five tokens back, operator
and operand just written). Where to stop is copied too ("=" where the next letter would be), not
counted: nothing depends on how far back in the input a step is, or on how many came before.

Rewrites: swap_operands (the first pair, where + or * commutes) and perturb_numbers (operands
changed, answer recomputed).
"""

from __future__ import annotations

import math
import random
import string

from msr.data.tasks.rewriting import derive, other

OPERATIONS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
}


HINTS = string.ascii_uppercase


def sample(rng: random.Random, steps: int, cfg) -> dict:
    operands = [rng.randrange(cfg.modulus) for _ in range(steps + 1)]
    operators = [rng.choice(cfg.operators) for _ in range(steps)]
    words = [str(operands[0])]
    for op, x in zip(operators, operands[1:]):
        words += [op, str(x)]
    hints = hint_letters(rng, steps, cfg.hint_letters) if cfg.index_hints else []
    text = render(words, hints)
    return {"input": text, "target": answer(text, cfg.modulus), "steps": steps,
            "scratchpad": scratchpad(text, cfg.modulus, cfg.scratchpad_operands)}


def hint_letters(rng: random.Random, steps: int, kind: str) -> list[str]:
    """`steps` letters in alphabetical order: a random subset, or a run from a random start."""
    if kind == "consecutive":
        start = rng.randrange(len(HINTS) - steps + 1)
        return list(HINTS[start : start + steps])
    return sorted(rng.sample(HINTS, steps))


def render(words: list[str], hints: list[str]) -> str:
    """The input: operand, operator, operand, ... and "=", each operator after its hint if any."""
    out = []
    for i, word in enumerate(words):
        if i % 2 and hints:  # an operator
            out.append(hints[i // 2])
        out.append(word)
    return " ".join(out) + " ="


def parse(text: str) -> list[str]:
    """Operand, operator, operand, ...: the words before "=", index hints left out."""
    return [w for w in text.removesuffix("=").split() if w not in HINTS]


def hints_of(text: str) -> list[str]:
    return [w for w in text.split() if w in HINTS]


def scratchpad(text: str, modulus: int, operands: bool = False) -> str:
    """The running values, each after its operator's hint where the input has them; with
    `operands`, the first operand, each step as hint, operator, operand, value, then "="."""
    words, values, hints = parse(text), running_values(text, modulus), hints_of(text)
    hints = hints or [""] * len(values)
    ops = [f"{op} {x} " for op, x in zip(words[1::2], words[2::2])] if operands else [""] * len(values)
    steps = [f"{hint} {op}{value}".lstrip() for hint, op, value in zip(hints, ops, values)]
    return " , ".join([words[0], *steps, "="] if operands else steps)


def running_values(text: str, modulus: int) -> list[str]:
    """The value after each operator, modulo `modulus` (the same as reducing only at the end)."""
    words = parse(text)
    value, values = int(words[0]), []
    for op, x in zip(words[1::2], words[2::2]):
        value = OPERATIONS[op](value, int(x)) % modulus
        values.append(str(value))
    return values


def answer(text: str, modulus: int) -> str:
    """The task's own checker: evaluate `text` left to right, then reduce modulo `modulus`."""
    words = parse(text)
    value = int(words[0])
    for op, x in zip(words[1::2], words[2::2]):
        value = OPERATIONS[op](value, int(x))
    return str(value % modulus)


def count(steps: int, cfg) -> int:
    """How many distinct inputs have this many steps."""
    if not cfg.index_hints:
        hinted = 1
    elif cfg.hint_letters == "consecutive":
        hinted = len(HINTS) - steps + 1  # the run's first letter
    else:
        hinted = math.comb(len(HINTS), steps)
    return cfg.modulus ** (steps + 1) * len(cfg.operators) ** steps * hinted


# ---- rewrites (msr augment) ---------------------------------------------------------------------

def _rewritten(record: dict, words: list[str], cfg, recompute: bool) -> dict:
    text = render(words, hints_of(record["input"]))  # the source's hints, in their places
    return derive(record, text, answer(text, cfg.modulus) if recompute else None,
                  scratchpad(text, cfg.modulus, cfg.scratchpad_operands))


def swap_operands(record, rng, cfg):
    # evaluated left to right, later operands meet the running value: only the first pair commutes
    words = parse(record["input"])
    if len(words) < 3 or words[1] not in ("+", "*") or words[0] == words[2]:
        return None
    words[0], words[2] = words[2], words[0]
    return _rewritten(record, words, cfg, recompute=False)


def perturb_numbers(record, rng, cfg):
    words = parse(record["input"])
    operands = range(0, len(words), 2)
    for i in rng.sample(operands, min(len(operands), rng.randint(1, 2))):
        words[i] = str(other(rng, range(cfg.modulus), int(words[i])))
    return _rewritten(record, words, cfg, recompute=True)


REWRITES = {"swap_operands": swap_operands, "perturb_numbers": perturb_numbers}
