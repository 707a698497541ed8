"""`kinship`: multi-hop family relations in words, as in CLUTRR (Sinha et al., 2019).

    "Bea is the mother of Anne . Carl is the brother of Bea . Dan is the son of Carl .
     Who is Dan to Anne ?"  ->  "first cousin"

The story walks a path of distinct people through a family tree, one relation per sentence,
and the query asks how the last person is related to the first: steps are the sentences (3
above), each composing one more relation. Everyone has one recorded parent and no spouse, so
the answer is fixed by how many generations their nearest common ancestor is above the first
person (u) and above the last (d): uncle is (2, 1), first cousin (2, 2). The scratchpad is the relation
of each person in turn to the first: "mother , uncle , first cousin".

Rewrites: rename_entities (new names from the same gender's pool).
"""

from __future__ import annotations

import math
import random

from msr.data.tasks.rewriting import derive

MEN = ("Adam", "Bob", "Carl", "Dan", "Eric", "Frank", "George", "Henry", "Ian", "Jack",
       "Kevin", "Leo", "Mark", "Nick", "Oscar", "Paul", "Ray", "Sam", "Tom", "Victor")
WOMEN = ("Anne", "Bea", "Clara", "Diana", "Emma", "Fiona", "Grace", "Helen", "Iris", "Jane",
         "Kate", "Lily", "Mary", "Nora", "Olga", "Pam", "Rose", "Sara", "Tina", "Vera")
MAX_STEPS = min(len(MEN), len(WOMEN)) - 1  # a story may name one gender only
KIN = {  # (male, female) words
    "parent": ("father", "mother"),
    "child": ("son", "daughter"),
    "sibling": ("brother", "sister"),
    "uncle": ("uncle", "aunt"),
    "nephew": ("nephew", "niece"),
}
EDGES = ("parent", "child", "sibling")  # the relations a sentence states
STATED = {word: (edge, bool(female)) for edge in EDGES for female, word in enumerate(KIN[edge])}
ORDINALS = ("first", "second", "third", "fourth", "fifth",
            "sixth", "seventh", "eighth", "ninth", "tenth")  # MAX_STEPS reaches at most ninth
TIMES = {1: "once", 2: "twice", 3: "thrice"}


def sample(rng: random.Random, steps: int, cfg) -> dict:
    parent: list[int | None] = []
    female: list[bool] = []

    def person(of: int | None) -> int:
        parent.append(of)
        female.append(rng.random() < 0.5)
        return len(parent) - 1

    path, edges = [person(None)], []
    for _ in range(steps):
        here = path[-1]
        # a missing parent is made on demand; one already on the path would repeat a person
        moves = EDGES if parent[here] not in path else EDGES[1:]
        edge = rng.choice(moves)
        if edge != "child" and parent[here] is None:
            parent[here] = person(None)  # off the path unless the walk goes there
        path.append(parent[here] if edge == "parent" else
                    person(here if edge == "child" else parent[here]))
        edges.append(edge)
    men, women = iter(rng.sample(MEN, len(MEN))), iter(rng.sample(WOMEN, len(WOMEN)))
    name = {p: next(women if female[p] else men) for p in path}
    sentences = [f"{name[b]} is the {KIN[edge][female[b]]} of {name[a]} ."
                 for a, b, edge in zip(path, path[1:], edges)]
    text = " ".join(sentences) + f" Who is {name[path[-1]]} to {name[path[0]]} ?"
    # labelled from the tree itself; answer() re-derives them from the words
    ancestors = [path[0]]
    while parent[ancestors[-1]] is not None:
        ancestors.append(parent[ancestors[-1]])
    running = [relation(*_apart(ancestors, parent, p), female[p]) for p in path[1:]]
    return {"input": text, "target": running[-1], "steps": steps, "scratchpad": " , ".join(running)}


def _apart(ancestors: list[int], parent: list[int | None], p: int) -> tuple[int, int]:
    """(u, d): the common ancestor is u generations above the first person and d above p."""
    down = 0
    while p not in ancestors:
        p, down = parent[p], down + 1
    return ancestors.index(p), down


def relation(up: int, down: int, female: bool) -> str:
    """The English name of someone `down` generations below the ancestor `up` above oneself."""
    if up >= 2 and down >= 2:
        words = f"{ORDINALS[min(up, down) - 2]} cousin"
        removed = abs(up - down)
        return words + f" {TIMES.get(removed, f'{removed} times')} removed" if removed else words
    n = max(up, down)  # otherwise one side is 0 or 1 and the other counts the generations
    if up == 0 or down == 0:
        word = ("grand" if n >= 2 else "") + KIN["child" if up == 0 else "parent"][female]
    else:
        word = KIN["sibling" if n == 1 else "uncle" if down == 1 else "nephew"][female]
    return "great " * max(n - 2, 0) + word


def parse(text: str) -> tuple[list[tuple[str, str, str]], str]:
    """The story as (who, relation word, of whom), and the first person, whom the query is about."""
    *sentences, query = text.split(" . ")
    story = []
    for sentence in sentences:
        who, _, _, word, _, of = sentence.split()  # "Bea is the mother of Anne"
        story.append((who, word, of))
    return story, query.split()[-2]


def scratchpad(text: str) -> str:
    """The relation of each person to the queried one, in story order, from the words alone:
    track where each stands as (u, d) from that person's line of ancestors."""
    story, first = parse(text)
    where = {first: (0, 0)}
    running = []
    for who, word, of in story:
        up, down = where[of]
        edge, female = STATED[word]
        if edge != "child":  # a sibling is a further child of the parent
            up, down = (up + 1, 0) if down == 0 else (up, down - 1)
        if edge != "parent":  # a new child: never someone already named, names being unique
            down += 1
        where[who] = up, down
        running.append(relation(up, down, female))
    return " , ".join(running)


def answer(text: str) -> str:
    """The task's own solver: the last item of the scratchpad."""
    return scratchpad(text).split(" , ")[-1]


def count(steps: int, cfg) -> int:
    """A lower bound on the distinct inputs with this many steps: the walks of children and
    siblings only (always allowed), each naming its people from either pool."""
    return 2**steps * math.perm(len(MEN) + len(WOMEN), steps + 1)


# ---- rewrites (msr augment) ---------------------------------------------------------------------

def rename_entities(record, rng, cfg):
    # names carry the gender of the first person (who is only ever an object): keep each pool
    words = record["input"].split(" ")
    new = {}
    for pool in (MEN, WOMEN):
        named = list(dict.fromkeys(w for w in words if w in pool))
        unused = [n for n in pool if n not in named]
        choices = unused if len(unused) >= len(named) else pool  # else permute the pool
        new.update(zip(named, rng.sample(choices, len(named)), strict=True))
    if all(new[n] == n for n in new):
        return None
    text = " ".join(new.get(w, w) for w in words)
    return derive(record, text, scratchpad=scratchpad(text))


REWRITES = {"rename_entities": rename_entities}
