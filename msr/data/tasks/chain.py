"""`chain`: variable binding, i.e. pointer chasing through assignments.

    "a = 3 ; b = a + 2 ; c = b * 2 ; d = 7 ; c ?"  ->  "10"

The query's chain (a -> b -> c) is hidden among distractor assignments (d). Steps are the hops
from the queried variable back to the constant it derives from: here c -> b -> a, 2 steps.
Values are taken modulo `modulus`. Assignments are listed so that each comes after the ones it
uses, with the distractors at random places in between. The scratchpad is the chain's values
from the constant up to the query: "a = 3 , b = 5 , c = 10".
"""

from __future__ import annotations

import random
import string

from msr.data.tasks.arith import OPERATIONS


def sample(rng: random.Random, steps: int, cfg) -> dict:
    names = rng.sample(string.ascii_lowercase, steps + 1 + cfg.distractors)
    chain, distractors = names[: steps + 1], names[steps + 1 :]
    statements = [f"{chain[0]} = {rng.randrange(cfg.modulus)}"]
    for parent, child in zip(chain, chain[1:]):
        statements.append(f"{child} = {parent} {rng.choice(cfg.operators)} {rng.randrange(1, 10)}")
    for name in distractors:  # a constant, or derived from a variable defined before it
        position = rng.randint(0, len(statements))
        earlier = [s.split()[0] for s in statements[:position]]
        if earlier and rng.random() < 0.5:
            statement = f"{name} = {rng.choice(earlier)} {rng.choice(cfg.operators)} {rng.randrange(1, 10)}"
        else:
            statement = f"{name} = {rng.randrange(cfg.modulus)}"
        statements.insert(position, statement)
    text = " ; ".join(statements) + f" ; {chain[-1]} ?"
    values = run(text, cfg.modulus)
    scratchpad = " , ".join(f"{name} = {values[name]}" for name in chain)
    return {"input": text, "target": str(values[chain[-1]]), "steps": steps, "scratchpad": scratchpad}


def run(text: str, modulus: int) -> dict[str, int]:
    """Every variable's value, running the assignments in order."""
    *statements, _ = (part.split() for part in text.split(";"))
    values: dict[str, int] = {}
    for name, _, *expression in statements:
        if len(expression) == 1:
            values[name] = int(expression[0]) % modulus
        else:
            source, op, constant = expression
            values[name] = OPERATIONS[op](values[source], int(constant)) % modulus
    return values


def answer(text: str, modulus: int) -> str:
    """The task's own solver: run the assignments, then read the queried variable."""
    return str(run(text, modulus)[text.split(";")[-1].split()[0]])


def count(steps: int, cfg) -> int:
    """A lower bound on the distinct inputs with this many steps (distractors only add more)."""
    return 26 ** (steps + 1) * cfg.modulus * (len(cfg.operators) * 9) ** steps
