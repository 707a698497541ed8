"""`chain`: variable binding, i.e. pointer chasing through assignments.

    "a = 3 ; b = a + 2 ; c = b * 2 ; d = 7 ; c ?"  ->  "10"

The query's chain (a -> b -> c) is hidden among distractor assignments (d). Steps are the hops
from the queried variable back to the constant it derives from: here c -> b -> a, 2 steps.
Values are taken modulo `modulus`. Assignments are listed so that each comes after the ones it
uses, with the distractors at random places in between. The scratchpad is the reasoning in the
order it can be done: first the trace, the query's statement and each one it uses back to the
constant, then each value computed forward from it:
"c = b * 2 , b = a + 2 , a = 3 , b = 3 + 2 = 5 , c = 5 * 2 = 10". Each item then needs one
lookup: the statement defining a name, or a value written just before. (The values alone, constant
first, ask for the whole chain to be found before the first token is written: with them no model
of the README's steps table got past 0.30.)

Rewrites: rename_entities, reorder_facts (another order that defines each variable before its
use), insert_distractor (as the generator makes them) and perturb_numbers (a constant on the
query's chain changed, answer recomputed).
"""

from __future__ import annotations

import random
import string

from msr.data.tasks.arith import OPERATIONS
from msr.data.tasks.rewriting import derive, other


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
    return {"input": text, "target": answer(text, cfg.modulus), "steps": steps,
            "scratchpad": scratchpad(text, cfg.modulus)}


def parse(text: str) -> tuple[list[list[str]], list[str]]:
    """The assignments' words (["b", "=", "a", "+", "2"]) and the query's (["b", "?"])."""
    *statements, query = (part.split() for part in text.split(";"))
    return statements, query


def run(text: str, modulus: int) -> dict[str, int]:
    """Every variable's value, running the assignments in order."""
    statements, _ = parse(text)
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
    return str(run(text, modulus)[parse(text)[1][0]])


def scratchpad(text: str, modulus: int) -> str:
    """The trace from the query back to its constant, then the values forward from it."""
    statements, query = parse(text)
    trace = _path(statements, query)
    values = run(text, modulus)
    forward = [f"{name} = {values[source]} {op} {k} = {values[name]}"
               for name, _, source, op, k in reversed(trace[:-1])]
    return " , ".join([" ".join(words) for words in trace] + forward)


def count(steps: int, cfg) -> int:
    """A lower bound on the distinct inputs with this many steps (distractors only add more)."""
    return 26 ** (steps + 1) * cfg.modulus * (len(cfg.operators) * 9) ** steps


# ---- rewrites (msr augment) ---------------------------------------------------------------------

def _path(statements: list[list[str]], query: list[str]) -> list[list[str]]:
    """The query's statements, from the queried variable back to its constant."""
    by_name = {s[0]: s for s in statements}
    path = [by_name[query[0]]]
    while len(path[-1]) == 5:  # "x = y op k": go on to y
        path.append(by_name[path[-1][2]])
    return path


def _rewritten(record: dict, statements, query, modulus: int, recompute: bool) -> dict:
    """The record for these statements; the scratchpad as the generator writes it."""
    text = " ; ".join(" ".join(words) for words in [*statements, query])
    return derive(record, text, answer(text, modulus) if recompute else None, scratchpad(text, modulus))


def rename_entities(record, rng, cfg):
    statements, query = parse(record["input"])
    names = [s[0] for s in statements]
    unused = [c for c in string.ascii_lowercase if c not in names]
    pool = unused if len(unused) >= len(names) else string.ascii_lowercase  # else permute
    new = dict(zip(names, rng.sample(pool, len(names)), strict=True))
    if all(new[n] == n for n in names):
        return None

    def rename(words):  # numbers and symbols stay as they are
        return [new.get(w, w) for w in words]

    return _rewritten(record, [rename(s) for s in statements], rename(query), cfg.modulus, recompute=False)


def reorder_facts(record, rng, cfg):
    statements, query = parse(record["input"])
    for _ in range(20):  # a different order, if there is one, comes with probability >= 1/2
        left, defined, order = list(statements), set(), []
        while left:  # a random topological order: any statement whose source is defined
            ready = [s for s in left if len(s) == 3 or s[2] in defined]
            pick = rng.choice(ready)
            left.remove(pick)
            order.append(pick)
            defined.add(pick[0])
        if order != statements:
            return _rewritten(record, order, query, cfg.modulus, recompute=False)
    return None


def insert_distractor(record, rng, cfg):
    # as the generator makes distractors: a constant, or derived from a variable defined before it
    statements, query = parse(record["input"])
    unused = [c for c in string.ascii_lowercase if c not in {s[0] for s in statements}]
    if not unused:
        return None
    name, position = rng.choice(unused), rng.randint(0, len(statements))
    earlier = [s[0] for s in statements[:position]]
    if earlier and rng.random() < 0.5:
        new = [name, "=", rng.choice(earlier), rng.choice(cfg.operators), str(rng.randrange(1, 10))]
    else:
        new = [name, "=", str(rng.randrange(cfg.modulus))]
    statements.insert(position, new)
    result = _rewritten(record, statements, query, cfg.modulus, recompute=False)
    same = answer(result["input"], cfg.modulus) == answer(record["input"], cfg.modulus)
    return result if same else None  # nothing reads the new variable, so always the same


def perturb_numbers(record, rng, cfg):
    # one constant on the query's chain (a distractor's would leave the answer as it is)
    statements, query = parse(record["input"])
    statement = rng.choice(_path(statements, query))  # the lists inside `statements`
    if len(statement) == 3:  # the initial constant, 0..modulus-1
        statement[2] = str(other(rng, range(cfg.modulus), int(statement[2])))
    else:  # the constant added, subtracted or multiplied, 1..9
        statement[4] = str(other(rng, range(1, 10), int(statement[4])))
    return _rewritten(record, statements, query, cfg.modulus, recompute=True)


REWRITES = {"rename_entities": rename_entities, "reorder_facts": reorder_facts,
            "insert_distractor": insert_distractor, "perturb_numbers": perturb_numbers}
