"""`logic`: facts and if-then rules in words; is a statement True, False or Unknown?

    "Anne is big . If someone is big then they are kind . If someone is kind then they are
     not red . Bob is quiet . Question : Anne is red ?"  ->  "False"

As in ProofWriter's open-world setting there is no closed-world negation: a statement that
the theory neither proves nor refutes is Unknown. Steps are the rule applications on the
query's chain (2 above). An Unknown example has the same chain with one link left out, so
the model has to follow it to find the gap. Distractor facts and rules, about attributes
off the chain, never touch the query. Sentences come in random order. The scratchpad is what
follows about the query's subject link by link: "Anne is big , Anne is kind , Anne is not red".
"""

from __future__ import annotations

import math
import random

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
    sentences = [f"{name} is {chain[0]} ."]
    proof = [f"{name} is {chain[0]}"]  # what follows about `name`, link by link
    for i, (a, b) in enumerate(zip(chain, chain[1:])):
        negated = label == "False" and i == steps - 1
        sentences.append(f"If someone is {a} then they are {'not ' if negated else ''}{b} .")
        proof.append(f"{name} is {'not ' if negated else ''}{b}")
    if label == "Unknown":
        gap = rng.randrange(len(sentences))  # a missing fact or link: unprovable
        sentences.pop(gap)
        proof = proof[:gap] or ["nothing follows"]
    for _ in range(cfg.distractors):
        if rng.random() < 0.5:
            sentences.append(f"{rng.choice(NAMES)} is {rng.choice(others)} .")
        else:
            a, b = rng.sample(others, 2)
            sentences.append(f"If someone is {a} then they are {b} .")
    rng.shuffle(sentences)
    text = " ".join(sentences) + f" Question : {name} is {chain[-1]} ?"
    return {"input": text, "target": answer(text), "steps": steps, "scratchpad": " , ".join(proof)}


def answer(text: str) -> str:
    """The task's own solver: apply the rules forwards until nothing new follows."""
    theory, question = text.split(" Question : ")
    facts, rules = set(), []
    for sentence in theory.split(" ."):
        words = sentence.split()
        if words[:1] == ["If"]:  # If someone is A then they are [not] B
            rules.append((words[3], words[-1], words[-2] == "not"))
        elif words:
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
