"""The operations of `msr augment`: each turns one record into a new one, or None.

Three families:
- text: EDA (Wei & Zou, 2019) for free-text data; the target is kept as is, EDA's assumption.
- label_preserving: a built-in task's input rewritten so that its answer cannot change
  (commuted operands, renamed entities, reordered facts, an added distractor); the scratchpad
  is recomputed with the task's solver (for logic, which has none, rewritten alongside).
- recompute: numbers changed, then target and scratchpad recomputed with the task's solver.

An op draws only from the `rng` it is given, never mutates its record, writes the input exactly
as the task's generator would, and returns None rather than an unchanged input.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from msr.data.tasks import TASKS, arith, chain, kinship, listops, logic
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


def _derive(record: dict, text: str, target: str | None = None, scratchpad: str | None = None) -> dict:
    """A new record: the source's keys, a new input, and target/scratchpad where given (a
    scratchpad only if the source had one)."""
    new = dict(record, input=text)
    if target is not None:
        new["target"] = target
    if scratchpad is not None and "scratchpad" in record:
        new["scratchpad"] = scratchpad
    return new


def _other(rng: random.Random, choices, old):
    """A random item of `choices` other than `old`, or None if there is none. Rejection
    sampling, since `choices` may be a large vocabulary."""
    if not any(c != old for c in choices):
        return None
    while True:
        pick = rng.choice(choices)
        if pick != old:
            return pick


def _varied(items: list) -> bool:
    return any(item != items[0] for item in items)


def _shuffled(rng: random.Random, items: list) -> list | None:
    """A random reordering of `items` that differs from it; None if every item is the same."""
    if not _varied(items):
        return None
    while True:  # each try repeats the order with probability <= 1/2
        order = rng.sample(items, len(items))
        if order != items:
            return order


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
    return _derive(record, " ".join(kept))


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
    return _derive(record, " ".join(words))


def word_replacement(record, rng, ctx):
    """EDA's synonym replacement without a thesaurus (none is available offline): one word is
    replaced by a random other word of the training vocabulary."""
    words = record["input"].split()
    if not words:
        return None
    i = rng.randrange(len(words))
    word = _other(rng, ctx.vocabulary, words[i])
    if word is None:
        return None
    words[i] = word
    return _derive(record, " ".join(words))


def random_insertion(record, rng, ctx):
    """EDA's random insertion with a random vocabulary word (not a synonym) at a random place."""
    words = record["input"].split()
    if not words or not ctx.vocabulary:
        return None
    words.insert(rng.randint(0, len(words)), rng.choice(ctx.vocabulary))
    return _derive(record, " ".join(words))


# ---- arith: "7 + 5 * 3 =" ---------------------------------------------------------------------

def _arith(record, words, modulus, recompute):
    text = " ".join(words)
    values = arith.running_values(text, modulus)
    return _derive(record, text, arith.answer(text, modulus) if recompute else None, " , ".join(values))


def _arith_swap(record, rng, ctx):
    # evaluated left to right, later operands meet the running value: only the first pair commutes
    words = record["input"].split()
    if len(words) < 4 or words[1] not in ("+", "*") or words[0] == words[2]:
        return None
    words[0], words[2] = words[2], words[0]
    return _arith(record, words, ctx.cfg.modulus, recompute=False)


def _arith_perturb(record, rng, ctx):
    words = record["input"].split()
    operands = range(0, len(words) - 1, 2)  # the last word is "="
    for i in rng.sample(operands, min(len(operands), rng.randint(1, 2))):
        words[i] = str(_other(rng, range(ctx.cfg.modulus), int(words[i])))
    return _arith(record, words, ctx.cfg.modulus, recompute=True)


# ---- chain: "a = 3 ; b = a + 2 ; d = 7 ; b ?" ----------------------------------------------------

def _chain_parse(text):
    *statements, query = text.split(" ; ")
    return [s.split() for s in statements], query


def _chain_path(statements, query):
    """The query's statements, from the queried variable back to its constant."""
    by_name = {s[0]: s for s in statements}
    path = [by_name[query.split()[0]]]
    while len(path[-1]) == 5:  # "x = y op k": go on to y
        path.append(by_name[path[-1][2]])
    return path


def _chain(record, statements, query, modulus, recompute):
    """The record for these statements; the scratchpad as the generator writes it."""
    text = " ; ".join([" ".join(s) for s in statements] + [query])
    values = chain.run(text, modulus)
    names = [s[0] for s in reversed(_chain_path(statements, query))]
    scratchpad = " , ".join(f"{name} = {values[name]}" for name in names)
    return _derive(record, text, str(values[names[-1]]) if recompute else None, scratchpad)


def _chain_rename(record, rng, ctx):
    statements, query = _chain_parse(record["input"])
    names = [s[0] for s in statements]
    unused = [c for c in string.ascii_lowercase if c not in names]
    pool = unused if len(unused) >= len(names) else string.ascii_lowercase  # else permute
    new = dict(zip(names, rng.sample(pool, len(names)), strict=True))
    if all(new[n] == n for n in names):
        return None

    def rename(words):  # numbers and symbols stay as they are
        return [new.get(w, w) for w in words]

    return _chain(record, [rename(s) for s in statements], " ".join(rename(query.split())),
                  ctx.cfg.modulus, recompute=False)


def _chain_reorder(record, rng, ctx):
    statements, query = _chain_parse(record["input"])
    for _ in range(20):  # a different order, if there is one, comes with probability >= 1/2
        left, defined, order = list(statements), set(), []
        while left:  # a random topological order: any statement whose source is defined
            ready = [s for s in left if len(s) == 3 or s[2] in defined]
            pick = rng.choice(ready)
            left.remove(pick)
            order.append(pick)
            defined.add(pick[0])
        if order != statements:
            return _chain(record, order, query, ctx.cfg.modulus, recompute=False)
    return None


def _chain_distractor(record, rng, ctx):
    # as the generator makes distractors: a constant, or derived from a variable defined before it
    statements, query = _chain_parse(record["input"])
    unused = [c for c in string.ascii_lowercase if c not in {s[0] for s in statements}]
    if not unused:
        return None
    name, position = rng.choice(unused), rng.randint(0, len(statements))
    earlier = [s[0] for s in statements[:position]]
    if earlier and rng.random() < 0.5:
        new = [name, "=", rng.choice(earlier), rng.choice(ctx.cfg.operators), str(rng.randrange(1, 10))]
    else:
        new = [name, "=", str(rng.randrange(ctx.cfg.modulus))]
    statements.insert(position, new)
    result = _chain(record, statements, query, ctx.cfg.modulus, recompute=False)
    same = chain.answer(result["input"], ctx.cfg.modulus) == chain.answer(record["input"], ctx.cfg.modulus)
    return result if same else None  # nothing reads the new variable, so always the same


def _chain_perturb(record, rng, ctx):
    # one constant on the query's chain (a distractor's would leave the answer as it is)
    statements, query = _chain_parse(record["input"])
    statement = rng.choice(_chain_path(statements, query))  # the lists inside `statements`
    if len(statement) == 3:  # the initial constant, 0..modulus-1
        statement[2] = str(_other(rng, range(ctx.cfg.modulus), int(statement[2])))
    else:  # the constant added, subtracted or multiplied, 1..9
        statement[4] = str(_other(rng, range(1, 10), int(statement[4])))
    return _chain(record, statements, query, ctx.cfg.modulus, recompute=True)


# ---- listops: "[MAX 2 9 [MIN 4 7 ] 0 ]" ---------------------------------------------------------

def _listops_tree(text):
    """[op, arg, ...] with digits as strings and sub-lists as lists."""
    stack: list[list] = [[]]
    for word in text.split():
        if word.startswith("["):
            stack.append([word[1:]])
        elif word == "]":
            node = stack.pop()
            stack[-1].append(node)
        else:
            stack[-1].append(word)
    return stack[0][0]


def _listops_words(node):
    if isinstance(node, str):
        return [node]
    return ["[" + node[0]] + [w for arg in node[1:] for w in _listops_words(arg)] + ["]"]


def _listops_lists(node):
    yield node
    for arg in node[1:]:
        if isinstance(arg, list):
            yield from _listops_lists(arg)


def _listops(record, words, recompute):
    text = " ".join(words)
    values = listops.list_values(text)  # moving a sub-list moves its value in the scratchpad
    return _derive(record, text, values[-1] if recompute else None, " , ".join(values))


def _listops_swap(record, rng, ctx):
    # MAX, MIN, MED and SM ignore the order of their arguments
    tree = _listops_tree(record["input"])
    candidates = [node for node in _listops_lists(tree) if _varied(node[1:])]
    if not candidates:
        return None
    node = rng.choice(candidates)
    node[1:] = _shuffled(rng, node[1:])
    return _listops(record, _listops_words(tree), recompute=False)


def _listops_perturb(record, rng, ctx):
    words = record["input"].split()
    digits = [i for i, w in enumerate(words) if w.isdigit()]
    for i in rng.sample(digits, min(len(digits), rng.randint(1, 2))):
        words[i] = str(_other(rng, range(10), int(words[i])))
    return _listops(record, words, recompute=True)


# ---- logic: "Anne is big . If someone is big then they are kind . Question : Anne is kind ?" ---

def _logic_parse(text):
    theory, question = text.split(" Question : ")
    return [s.strip() + " ." for s in theory.split(" .") if s.strip()], "Question : " + question


def _logic_rename(record, rng, ctx):
    subject = record["input"].split(" Question : ")[1].split()[0]
    words = record["input"].split(" ")
    unused = [n for n in logic.NAMES if n not in words]
    if not unused:
        return None
    new = rng.choice(unused)

    def rename(text):
        return " ".join(new if w == subject else w for w in text.split(" "))

    return _derive(record, rename(record["input"]), scratchpad=rename(record.get("scratchpad", "")))


def _logic_reorder(record, rng, ctx):
    sentences, question = _logic_parse(record["input"])
    order = _shuffled(rng, sentences)  # the scratchpad follows the chain, not the text: unchanged
    return None if order is None else _derive(record, " ".join(order + [question]))


def _logic_off_chain(sentences, subject, attribute):
    """Attributes no rule links to the subject's facts or to the question's attribute, as the
    generator's distractors are."""
    facts = [s.split() for s in sentences]
    touched = {attribute} | {w[2] for w in facts if w[0] == subject}
    rules = [(w[3], w[-2]) for w in facts if w[0] == "If"]
    grown = True
    while grown:
        linked = {x for a, b in rules if a in touched or b in touched for x in (a, b)}
        grown = not linked <= touched
        touched |= linked
    return [a for a in logic.ATTRIBUTES if a not in touched]


def _logic_distractor(record, rng, ctx):
    sentences, question = _logic_parse(record["input"])
    _, _, subject, _, attribute, _ = question.split()
    unused = [a for a in logic.ATTRIBUTES if a not in record["input"].split()]
    if rng.random() < 0.5 and len(unused) >= 2:  # a rule nothing can trigger
        a, b = rng.sample(unused, 2)
        sentence = f"If someone is {a} then they are {b} ."
    else:  # a fact about someone else: rules only ever conclude about the same person
        off_chain = _logic_off_chain(sentences, subject, attribute)
        if not off_chain:
            return None
        name = rng.choice([n for n in logic.NAMES if n != subject])
        sentence = f"{name} is {rng.choice(off_chain)} ."
    sentences.insert(rng.randint(0, len(sentences)), sentence)
    text = " ".join(sentences + [question])
    return _derive(record, text) if logic.answer(text) == logic.answer(record["input"]) else None


# ---- kinship: "Bea is the mother of Anne . Carl is the brother of Bea . Who is Carl to Anne ?" --

def _kinship_rename(record, rng, ctx):
    # names carry the gender of the first person (who is only ever an object): keep each pool
    words = record["input"].split(" ")
    new = {}
    for pool in (kinship.MEN, kinship.WOMEN):
        named = list(dict.fromkeys(w for w in words if w in pool))
        unused = [n for n in pool if n not in named]
        choices = unused if len(unused) >= len(named) else pool  # else permute the pool
        new.update(zip(named, rng.sample(choices, len(named)), strict=True))
    if all(new[n] == n for n in new):
        return None
    text = " ".join(new.get(w, w) for w in words)
    return _derive(record, text, scratchpad=kinship.scratchpad(text))


# ---- the registry ----------------------------------------------------------------------------

TASK_OPS = {  # name: (family, {task: function})
    "swap_operands": ("label_preserving", {"arith": _arith_swap, "listops": _listops_swap}),
    "rename_entities": ("label_preserving", {"chain": _chain_rename, "logic": _logic_rename,
                                             "kinship": _kinship_rename}),
    "reorder_facts": ("label_preserving", {"chain": _chain_reorder, "logic": _logic_reorder}),
    "insert_distractor": ("label_preserving", {"chain": _chain_distractor, "logic": _logic_distractor}),
    "perturb_numbers": ("recompute", {"arith": _arith_perturb, "chain": _chain_perturb,
                                      "listops": _listops_perturb}),
}


def _dispatch(name: str, table: dict) -> Callable:
    def apply(record, rng, ctx):
        if ctx.task not in table:
            check_supported([name], ctx.task)
        return table[ctx.task](record, rng, ctx)
    return apply


OPERATIONS: dict[str, Operation] = {
    **{f.__name__: Operation(f.__name__, "text", None, f)
       for f in (random_deletion, random_swap, word_replacement, random_insertion)},
    **{name: Operation(name, family, tuple(table), _dispatch(name, table))
       for name, (family, table) in TASK_OPS.items()},
}


def supported(task: str) -> list[str]:
    """The operations for this data: the task's own for a built-in task, else the text ones."""
    if task in TASKS:
        return [name for name, op in OPERATIONS.items() if op.tasks and task in op.tasks]
    return [name for name, op in OPERATIONS.items() if op.tasks is None]


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
