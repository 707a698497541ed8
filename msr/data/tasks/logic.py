"""`logic`: facts and if-then rules in words; is a statement True, False or Unknown?

    "Anne is big . If someone is big then they are kind . If someone is kind then they are
     not red . Bob is quiet . Question : Anne is red ?"  ->  "False"

As in ProofWriter's open-world setting there is no closed-world negation: a statement that
the theory neither proves nor refutes is Unknown. Steps are the rule applications on the
query's chain (2 above). An Unknown example has the same chain with one link left out, so
the model has to follow it to find the gap. Distractor facts and rules, about attributes
off the chain, never touch the query. Sentences come in random order. The scratchpad is what
follows about the query's subject link by link: "Anne is big , Anne is kind , Anne is not red".

Rewrites: rename_entities (the question's subject, in the scratchpad too), reorder_facts (the
sentences shuffled; the scratchpad follows the chain, not the text) and insert_distractor (a
rule nothing triggers, or a fact about someone else off the chain).
"""

from __future__ import annotations

import math
import random

from msr.data.tasks.rewriting import derive, shuffled

NAMES = ("Anne", "Bob", "Charlie", "Dave", "Erin", "Fiona", "Gary", "Harry")
ATTRIBUTES = ("big", "kind", "red", "quiet", "round", "smart", "young", "cold",
              "blue", "green", "furry", "rough", "nice", "white", "rich", "tall")
LABELS = ("True", "False", "Unknown")
MAX_STEPS = len(ATTRIBUTES) - 4  # leaves attributes for distractors


def sample(rng: random.Random, steps: int, cfg) -> dict:
    name = rng.choice(NAMES)
    attributes = rng.sample(ATTRIBUTES, len(ATTRIBUTES))
    chain, others = attributes[: steps + 1], attributes[steps + 1 :]
    label = rng.choice(LABELS)
    sentences = [f"{name} is {chain[0]}"]
    proof = [f"{name} is {chain[0]}"]  # what follows about `name`, link by link
    for i, (a, b) in enumerate(zip(chain, chain[1:])):
        negated = label == "False" and i == steps - 1
        sentences.append(f"If someone is {a} then they are {'not ' if negated else ''}{b}")
        proof.append(f"{name} is {'not ' if negated else ''}{b}")
    if label == "Unknown":
        gap = rng.randrange(len(sentences))  # a missing fact or link: unprovable
        sentences.pop(gap)
        proof = proof[:gap] or ["nothing follows"]
    for _ in range(cfg.distractors):
        if rng.random() < 0.5:
            sentences.append(f"{rng.choice(NAMES)} is {rng.choice(others)}")
        else:
            a, b = rng.sample(others, 2)
            sentences.append(f"If someone is {a} then they are {b}")
    rng.shuffle(sentences)
    text = render(sentences, f"{name} is {chain[-1]} ?")
    return {"input": text, "target": answer(text), "steps": steps, "scratchpad": " , ".join(proof)}


def parse(text: str) -> tuple[list[str], str]:
    """The theory's sentences without their full stops, and the question ("Anne is red ?")."""
    theory, question = text.split(" Question : ")
    return [s.strip() for s in theory.split(" .") if s.strip()], question


def render(sentences: list[str], question: str) -> str:
    """The text as the generator writes it."""
    return " ".join(s + " ." for s in sentences) + f" Question : {question}"


def answer(text: str) -> str:
    """The task's own solver: apply the rules forwards until nothing new follows."""
    sentences, question = parse(text)
    facts, rules = set(), []
    for words in map(str.split, sentences):
        if words[0] == "If":  # If someone is A then they are [not] B
            rules.append((words[3], words[-1], words[-2] == "not"))
        else:
            facts.add((words[0], words[2], True))
    changed = True
    while changed:
        new = {(who, b, not negated) for who, a, positive in facts if positive
               for a2, b, negated in rules if a2 == a}
        changed = not new <= facts
        facts |= new
    who, _, attribute, _ = question.split()
    if (who, attribute, True) in facts:
        return "True"
    if (who, attribute, False) in facts:
        return "False"
    return "Unknown"


def count(steps: int, cfg) -> int:
    """A lower bound on the distinct inputs with this many steps: the chains alone."""
    return math.perm(len(ATTRIBUTES), steps + 1) * len(NAMES) * len(LABELS)


# ---- rewrites (msr augment) ---------------------------------------------------------------------

def rename_entities(record, rng, cfg):
    subject = parse(record["input"])[1].split()[0]
    words = record["input"].split(" ")
    unused = [n for n in NAMES if n not in words]
    if not unused:
        return None
    new = rng.choice(unused)

    def rename(text):
        return " ".join(new if w == subject else w for w in text.split(" "))

    return derive(record, rename(record["input"]), scratchpad=rename(record.get("scratchpad", "")))


def reorder_facts(record, rng, cfg):
    sentences, question = parse(record["input"])
    order = shuffled(rng, sentences)  # the scratchpad follows the chain, not the text: unchanged
    return None if order is None else derive(record, render(order, question))


def _off_chain(sentences: list[str], subject: str, attribute: str) -> list[str]:
    """Attributes no rule links to the subject's facts or to the question's attribute, as the
    generator's distractors are."""
    facts = [s.split() for s in sentences]
    touched = {attribute} | {w[2] for w in facts if w[0] == subject}
    rules = [(w[3], w[-1]) for w in facts if w[0] == "If"]
    grown = True
    while grown:
        linked = {x for a, b in rules if a in touched or b in touched for x in (a, b)}
        grown = not linked <= touched
        touched |= linked
    return [a for a in ATTRIBUTES if a not in touched]


def insert_distractor(record, rng, cfg):
    sentences, question = parse(record["input"])
    subject, _, attribute, _ = question.split()
    unused = [a for a in ATTRIBUTES if a not in record["input"].split()]
    if rng.random() < 0.5 and len(unused) >= 2:  # a rule nothing can trigger
        a, b = rng.sample(unused, 2)
        sentence = f"If someone is {a} then they are {b}"
    else:  # a fact about someone else: rules only ever conclude about the same person
        off_chain = _off_chain(sentences, subject, attribute)
        if not off_chain:
            return None
        name = rng.choice([n for n in NAMES if n != subject])
        sentence = f"{name} is {rng.choice(off_chain)}"
    sentences.insert(rng.randint(0, len(sentences)), sentence)
    text = render(sentences, question)
    return derive(record, text) if answer(text) == answer(record["input"]) else None


REWRITES = {"rename_entities": rename_entities, "reorder_facts": reorder_facts,
            "insert_distractor": insert_distractor}
