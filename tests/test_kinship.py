"""The kinship task: labels checked by an independent tree-building solver, hand-made stories,
story shape, determinism."""

from __future__ import annotations

import random
from types import SimpleNamespace

from msr.data.tasks import kinship

CFG = SimpleNamespace(name="kinship", seed=1)

BASE = {  # (up, down): "male female"; more generations only add "great"s
    (1, 0): "father mother", (2, 0): "grandfather grandmother",
    (0, 1): "son daughter", (0, 2): "grandson granddaughter",
    (1, 1): "brother sister", (2, 1): "uncle aunt", (1, 2): "nephew niece",
}
ORDINAL = "first second third fourth fifth sixth seventh eighth ninth tenth".split()


def name(up: int, down: int, female: bool) -> str:
    if up >= 2 and down >= 2:
        words = f"{ORDINAL[min(up, down) - 2]} cousin"
        removed = abs(up - down)
        if removed:
            times = {1: "once", 2: "twice", 3: "thrice"}.get(removed, f"{removed} times")
            words += f" {times} removed"
        return words
    return "great " * max(max(up, down) - 2, 0) + BASE[min(up, 2), min(down, 2)].split()[female]


def tree_answer(text: str) -> str:
    """Independent solver: rebuild the parent links (siblings share one, unnamed if never
    stated), then climb from both people to their lowest common ancestor."""
    *sentences, query = text.split(" . ")
    parent, sibling_of, female = {}, {}, {}

    def group(x):
        while sibling_of.get(x, x) != x:
            x = sibling_of[x]
        return x

    for sentence in sentences:
        x, _, _, word, _, y = sentence.split()
        female[x] = word in ("mother", "daughter", "sister")
        if word in ("father", "mother"):
            parent[y] = x
        elif word in ("son", "daughter"):
            parent[x] = y
        else:
            sibling_of[group(x)] = group(y)
    people = {w for s in sentences for w in s.split()[::5]}
    shared = {}
    for p in sorted(people & parent.keys()):
        assert shared.setdefault(group(p), parent[p]) == parent[p], "two parents for one family"
    for p in people - parent.keys():
        parent[p] = shared.get(group(p), f"?{group(p)}")

    def line(p):
        out = [p]
        while out[-1] in parent:
            out.append(parent[out[-1]])
        return out

    _, _, last, _, first, _ = query.split()
    mine = line(first)
    down, common = next((d, a) for d, a in enumerate(line(last)) if a in mine)
    return name(mine.index(common), down, female[last])


def test_labels_agree_with_an_independent_solver():
    rng = random.Random(0)
    for _ in range(400):
        r = kinship.sample(rng, rng.randint(1, 8), CFG)
        assert r["target"] == tree_answer(r["input"]) == kinship.answer(r["input"]), r
        assert r["scratchpad"] == kinship.scratchpad(r["input"])


def test_hand_written_stories():
    cases = {
        "Bob is the brother of Anne . Who is Bob to Anne ?": "brother",
        "Bea is the mother of Anne . Carl is the brother of Bea . Who is Carl to Anne ?": "uncle",
        "Bob is the father of Anne . Clara is the mother of Bob . Dan is the father of Clara . "
        "Who is Dan to Anne ?": "great grandfather",
        "Bea is the mother of Anne . Carl is the brother of Bea . Dan is the son of Carl . "
        "Who is Dan to Anne ?": "first cousin",
        # a sibling's parent is one's own; a parent's new child is a sibling
        "Bob is the brother of Anne . Carl is the father of Bob . Who is Carl to Anne ?": "father",
        "Bob is the father of Anne . Carl is the son of Bob . Who is Carl to Anne ?": "brother",
        "Bob is the son of Anne . Clara is the sister of Bob . Who is Clara to Anne ?": "daughter",
        "Bob is the brother of Anne . Carl is the son of Bob . Dan is the son of Carl . "
        "Who is Dan to Anne ?": "great nephew",
    }
    for text, relation in cases.items():
        assert kinship.answer(text) == relation == tree_answer(text), text
    text = ("Bob is the father of Anne . Carl is the father of Bob . Dan is the brother of Carl . "
            "Eric is the son of Dan . Frank is the son of Eric . Grace is the daughter of Frank . "
            "Who is Grace to Anne ?")
    assert kinship.scratchpad(text) == ("father , grandfather , great uncle , first cousin once removed"
                                        " , second cousin , second cousin once removed")


def test_relation_names():
    assert kinship.relation(2, 5, False) == "first cousin thrice removed"
    assert kinship.relation(2, 6, False) == "first cousin 4 times removed"
    assert kinship.relation(5, 3, True) == "second cousin twice removed"
    assert kinship.relation(4, 4, True) == "third cousin"
    assert kinship.relation(0, 4, True) == "great great granddaughter"
    assert kinship.relation(4, 1, True) == "great great aunt"
    for up in range(6):
        for down in range(6):
            if up or down:
                assert kinship.relation(up, down, True) == name(up, down, True)


def test_story_shape():
    rng = random.Random(1)
    for steps in (1, 2, 5, 10, kinship.MAX_STEPS):
        for _ in range(30):
            r = kinship.sample(rng, steps, CFG)
            *sentences, query = r["input"].split(" . ")
            assert r["steps"] == steps == len(sentences)
            assert query.startswith("Who is ") and query.endswith(" ?") and "  " not in r["input"]
            newcomers = [s.split()[0] for s in sentences]
            first = sentences[0].split()[-1]
            assert len({first, *newcomers}) == steps + 1  # every sentence names someone new
            assert all(s.split()[-1] in [first, *newcomers[:i]] for i, s in enumerate(sentences))
            pad = r["scratchpad"].split(" , ")
            assert len(pad) == steps and pad[-1] == r["target"]
    assert kinship.count(1, CFG) == 2 * 40 * 39


def test_all_relations_occur():
    rng = random.Random(2)
    words = {kinship.sample(rng, 1, CFG)["target"] for _ in range(200)}
    assert words == {"father", "mother", "son", "daughter", "brother", "sister"}


def test_deterministic():
    draw = lambda seed: [kinship.sample(random.Random(seed), k, CFG) for k in range(1, 9)]
    assert draw(5) == draw(5) and draw(5) != draw(6)
