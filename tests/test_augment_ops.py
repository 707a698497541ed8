"""Augmentation operations: every op on every task it supports, checked with the task's own
solver on generated data; hand-computed cases; determinism; EDA on free text; refusals."""

from __future__ import annotations

import copy
import random
import re
from itertools import pairwise
from pathlib import Path

import pytest

from msr.augment.operations import OPERATIONS, Context, check_supported, supported
from msr.config import (
    ArithConfig,
    ChainConfig,
    KinshipConfig,
    ListOpsConfig,
    LogicConfig,
)
from msr.data.tasks import TASKS, arith, chain, kinship, listops, logic
from msr.errors import UserError

CFGS = {"arith": ArithConfig(), "chain": ChainConfig(), "listops": ListOpsConfig(),
        "logic": LogicConfig(), "kinship": KinshipConfig()}  # the defaults of conf/data/*.yaml

SOLVE = {
    "arith": lambda text, cfg: arith.answer(text, cfg.modulus),
    "chain": lambda text, cfg: chain.answer(text, cfg.modulus),
    "listops": lambda text, cfg: listops.answer(text),
    "logic": lambda text, cfg: logic.answer(text),
    "kinship": lambda text, cfg: kinship.answer(text),
}

# The generators' formats, word for word.
STATEMENT = r"[a-z] = (\d+|[a-z] [-+*] [1-9])"
LOGIC_SENTENCE = r"(\w+ is \w+|If someone is \w+ then they are (not )?\w+) \."
KIN_SENTENCE = r"[A-Z][a-z]+ is the (father|mother|son|daughter|brother|sister) of [A-Z][a-z]+ \."
FORMAT = {
    "arith": r"\d+( [-+*] \d+)+ =",
    "chain": rf"{STATEMENT}( ; {STATEMENT})* ; [a-z] \?",
    "listops": r"\[(MAX|MIN|MED|SM)( (\[(MAX|MIN|MED|SM)|\d|\]))+",
    "logic": rf"{LOGIC_SENTENCE}( {LOGIC_SENTENCE})* Question : \w+ is \w+ \?",
    "kinship": rf"{KIN_SENTENCE}( {KIN_SENTENCE})* Who is [A-Z][a-z]+ to [A-Z][a-z]+ \?",
}

# Least share of generated examples an op must change (the rest are None by design, e.g.
# swap_operands needs + or * first in arith). insert_distractor always has a free letter or
# attribute at these sizes, so a None would mean its own solver check refused the example.
MIN_CHANGED = {"swap_operands": 0.5, "perturb_numbers": 0.95, "rename_entities": 0.95,
               "reorder_facts": 0.8, "insert_distractor": 1.0}


def ctx(task: str, vocabulary=()) -> Context:
    return Context(task, CFGS.get(task), list(vocabulary))


def examples(task: str) -> list[dict]:
    module, cfg = TASKS[task], CFGS[task]
    return [module.sample(random.Random(i), steps, cfg) for steps in range(1, 5) for i in range(50)]


def chain_scratchpad_ok(text: str, scratchpad: str, modulus: int) -> bool:
    """Independently: the trace is statements of the text, from the query back to a constant,
    each using the next; then one computation per link, forward, with the values chain.run gives."""
    statements = {s.split()[0]: s for s in text.split(" ; ")[:-1]}
    values = chain.run(text, modulus)
    items = scratchpad.split(" , ")
    k = (len(items) - 1) // 2  # k links: k + 1 statements traced, k values computed
    trace, forward = [item.split() for item in items[: k + 1]], [item.split() for item in items[k + 1 :]]
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
    return (trace[0][0] == text.split(" ; ")[-1].split()[0]
            and all(" ".join(words) == statements[words[0]] for words in trace)
            and all(user[2] == used[0] for user, used in pairwise(trace)) and len(trace[-1]) == 3
            and [f[0] for f in forward] == [t[0] for t in reversed(trace[:-1])]
            and all(int(f[2]) == values[t[2]] and f[3:5] == t[3:5]
                    and int(f[6]) == ops[f[3]](int(f[2]), int(f[4])) % modulus == values[f[0]]
                    for f, t in zip(forward, reversed(trace[:-1]))))


def check_scratchpad(task: str, old: dict, new: dict, cfg) -> None:
    text, pad = new["input"], new["scratchpad"]
    if task == "arith":
        assert pad == " , ".join(arith.running_values(text, cfg.modulus))
    elif task == "listops":
        assert pad == " , ".join(listops.list_values(text))
    elif task == "kinship":
        assert pad == kinship.scratchpad(text)
    elif task == "chain":
        assert chain_scratchpad_ok(text, pad, cfg.modulus), (text, pad)
    else:  # logic has no scratchpad solver: the proof is about the question's subject
        subject = text.split(" Question : ")[1].split()[0]
        assert pad == "nothing follows" or all(item.split()[0] == subject for item in pad.split(" , "))
        was = old["input"].split(" Question : ")[1].split()[0]
        assert " ".join(was if w == subject else w for w in pad.split()) == old["scratchpad"]  # the same proof


CASES = [(task, name) for name in ("swap_operands", "rename_entities", "reorder_facts",
                                   "insert_distractor", "perturb_numbers")
         for task in OPERATIONS[name].tasks]


@pytest.mark.parametrize("task,name", CASES)
def test_generated_examples(task, name):
    op, cfg, changed = OPERATIONS[name], CFGS[task], 0
    for i, record in enumerate(examples(task)):
        before = copy.deepcopy(record)
        new = op.apply(record, random.Random(1000 + i), ctx(task))
        assert record == before  # never mutated
        if new is None:
            continue
        changed += 1
        text = new["input"]
        assert text != record["input"]
        assert re.fullmatch(FORMAT[task], text), text
        assert new["steps"] == record["steps"] and set(new) == set(record)
        assert new["target"] == SOLVE[task](text, cfg)
        if op.family == "label_preserving":
            assert new["target"] == record["target"]
        check_scratchpad(task, record, new, cfg)
    assert changed >= MIN_CHANGED[name] * 200, (task, name, changed)


def test_support_matrix():
    assert supported("arith") == ["swap_operands", "perturb_numbers"]
    assert supported("chain") == ["rename_entities", "reorder_facts", "insert_distractor", "perturb_numbers"]
    assert supported("listops") == ["swap_operands", "perturb_numbers"]
    assert supported("logic") == ["rename_entities", "reorder_facts", "insert_distractor"]
    assert supported("kinship") == ["rename_entities"]
    text = ["random_deletion", "random_swap", "word_replacement", "random_insertion"]
    assert supported("scan_simple") == supported("files") == text


def test_each_task_module_holds_its_rewrites():
    # the registry is gathered from the tasks, which know nothing of msr.augment
    for task, module in TASKS.items():
        assert set(supported(task)) == set(module.REWRITES)
        assert all(OPERATIONS[name].family != "text" for name in module.REWRITES)
        assert "msr.augment" not in Path(module.__file__).read_text()


def test_listops_parser_round_trips_and_refuses_broken_text():
    for record in examples("listops"):
        assert listops.render(listops.parse(record["input"])) == record["input"]
    for broken in ("[MAX 1 2", "[MAX 1 2 ] ]", "3", "[MAX 1 ] [MIN 2 ]"):
        with pytest.raises(ValueError):
            listops.list_values(broken)


def test_chain_parser_rejects_swapped_operands():
    # why swap_operands leaves chain out: its parser reads "x = y op k" only
    with pytest.raises(KeyError):
        chain.run("a = 3 ; b = 2 + a ; b ?", 10)


# ---- hand-computed cases -------------------------------------------------------------------

def apply(name, task, record, seed=0, vocabulary=()):
    return OPERATIONS[name].apply(record, random.Random(seed), ctx(task, vocabulary))


def test_arith_swap_by_hand():
    new = apply("swap_operands", "arith", {"input": "7 + 5 * 3 =", "target": "6", "steps": 2, "scratchpad": "2 , 6"})
    assert new == {"input": "5 + 7 * 3 =", "target": "6", "steps": 2, "scratchpad": "2 , 6"}
    assert apply("swap_operands", "arith", {"input": "7 - 5 * 3 =", "target": "6"}) is None  # - does not commute
    assert apply("swap_operands", "arith", {"input": "5 * 5 + 3 =", "target": "8"}) is None  # same operands


def test_arith_perturb_by_hand():
    # 1 + 1 modulo 2: one or both operands become 0
    expected = {"0 + 1 =": "1", "1 + 0 =": "1", "0 + 0 =": "0"}
    for seed in range(20):
        new = OPERATIONS["perturb_numbers"].apply({"input": "1 + 1 =", "target": "0"}, random.Random(seed),
                                                  Context("arith", ArithConfig(modulus=2), []))
        assert expected[new["input"]] == new["target"]


def test_arith_rewrites_keep_the_index_hints_in_place():
    record = {"input": "3 B + 4 K * 2 =", "target": "4", "scratchpad": "B 7 , K 4"}
    cfg = ArithConfig(index_hints=True)
    new = OPERATIONS["swap_operands"].apply(record, random.Random(0), Context("arith", cfg, []))
    assert (new["input"], new["target"], new["scratchpad"]) == ("4 B + 3 K * 2 =", "4", "B 7 , K 4")
    for seed in range(10):
        new = OPERATIONS["perturb_numbers"].apply(record, random.Random(seed), Context("arith", cfg, []))
        words = new["input"].split()
        assert words[1::3] == ["B", "K", "="] and new["target"] == arith.answer(new["input"], 10)


def test_arith_rewrites_write_the_scratchpad_the_way_the_task_does():
    record = {"input": "3 B + 4 K * 2 =", "target": "4", "scratchpad": "3 , B + 4 7 , K * 2 4 , ="}
    cfg = ArithConfig(index_hints=True, scratchpad_operands=True)
    new = OPERATIONS["swap_operands"].apply(record, random.Random(0), Context("arith", cfg, []))
    assert (new["input"], new["scratchpad"]) == ("4 B + 3 K * 2 =", "4 , B + 3 7 , K * 2 4 , =")


def test_chain_by_hand():
    record = {"input": "a = 3 ; b = a + 2 ; d = 7 ; b ?", "target": "5", "steps": 1,
              "scratchpad": "b = a + 2 , a = 3 , b = 3 + 2 = 5"}
    for seed in range(10):
        new = apply("rename_entities", "chain", record, seed)
        x, y, z = re.fullmatch(r"(\w) = 3 ; (\w) = \1 \+ 2 ; (\w) = 7 ; \2 \?", new["input"]).groups()
        assert len({x, y, z}) == 3 and not {x, y, z} & {"a", "b", "d"}
        assert (new["target"], new["scratchpad"]) == ("5", f"{y} = {x} + 2 , {x} = 3 , {y} = 3 + 2 = 5")

        new = apply("reorder_facts", "chain", record, seed)
        assert new["input"] in ("a = 3 ; d = 7 ; b = a + 2 ; b ?", "d = 7 ; a = 3 ; b = a + 2 ; b ?")
        assert (new["target"], new["scratchpad"]) == ("5", record["scratchpad"])

        new = apply("insert_distractor", "chain", record, seed)
        statements = new["input"].split(" ; ")
        extra = [s for s in statements if s not in record["input"].split(" ; ")]
        assert len(statements) == 5 and len(extra) == 1 and extra[0][0] not in "abd"
        assert (new["target"], new["scratchpad"]) == ("5", record["scratchpad"])

        new = apply("perturb_numbers", "chain", {"input": "a = 3 ; b = a * 2 ; b ?", "target": "6"}, seed)
        start, factor = map(int, re.fullmatch(r"a = (\d+) ; b = a \* (\d) ; b \?", new["input"]).groups())
        assert (start != 3) + (factor != 2) == 1 and 1 <= factor <= 9
        assert new["target"] == str(start * factor % 100)
    # one chain and nothing else: a single valid order
    assert apply("reorder_facts", "chain", {"input": "a = 3 ; b = a + 2 ; b ?", "target": "5"}) is None


def test_listops_by_hand():
    record = {"input": "[SM 1 [MAX 2 3 ] ]", "target": "4", "steps": 2, "scratchpad": "3 , 4"}
    for seed in range(10):
        new = apply("swap_operands", "listops", record, seed)
        assert new["input"] in ("[SM [MAX 2 3 ] 1 ]", "[SM 1 [MAX 3 2 ] ]")
        assert (new["target"], new["scratchpad"]) == ("4", "3 , 4")
        new = apply("perturb_numbers", "listops", {"input": "[MAX 2 9 ]", "target": "9"}, seed)
        a, b = map(int, re.fullmatch(r"\[MAX (\d) (\d) \]", new["input"]).groups())
        assert (a, b) != (2, 9) and new["target"] == str(max(a, b))
    assert apply("swap_operands", "listops", {"input": "[MIN 4 4 ]", "target": "4"}) is None


def test_logic_by_hand():
    text = "Anne is big . If someone is big then they are kind . Question : Anne is kind ?"
    record = {"input": text, "target": "True", "steps": 1, "scratchpad": "Anne is big , Anne is kind"}
    for seed in range(10):
        new = apply("rename_entities", "logic", record, seed)
        x = new["input"].split()[0]
        assert x in logic.NAMES and x != "Anne"
        assert new == dict(record, input=text.replace("Anne", x), scratchpad=f"{x} is big , {x} is kind")

        new = apply("reorder_facts", "logic", record, seed)
        swapped = "If someone is big then they are kind . Anne is big . Question : Anne is kind ?"
        assert new == dict(record, input=swapped)

        new = apply("insert_distractor", "logic", record, seed)
        sentences = new["input"].split(" Question : ")[0].split(" . ")
        extra = [s.rstrip(" .") for s in sentences if s.rstrip(" .") not in text]
        assert len(sentences) == 3 and len(extra) == 1 and new["target"] == "True"
        words = extra[0].split()
        assert not {"big", "kind"} & set(words)
        assert words[0] == "If" or words[0] in set(logic.NAMES) - {"Anne"}


def test_kinship_rename_by_hand():
    text = "Bea is the mother of Anne . Carl is the brother of Bea . Who is Carl to Anne ?"
    record = {"input": text, "target": "uncle", "steps": 2, "scratchpad": "mother , uncle"}
    assert (kinship.answer(text), kinship.scratchpad(text)) == ("uncle", "mother , uncle")
    for seed in range(10):
        new = apply("rename_entities", "kinship", record, seed)
        m, a, c = re.fullmatch(r"(\w+) is the mother of (\w+) \. (\w+) is the brother of \1 \. Who is \3 to \2 \?",
                               new["input"]).groups()
        assert {m, a} <= set(kinship.WOMEN) - {"Bea", "Anne"} and m != a
        assert c in kinship.MEN and c != "Carl"
        assert (new["target"], new["scratchpad"]) == ("uncle", "mother , uncle")


# ---- determinism -----------------------------------------------------------------------------

@pytest.mark.parametrize("task,name", CASES)
def test_same_seed_same_output(task, name):
    for record in examples(task)[::20]:
        first = OPERATIONS[name].apply(record, random.Random(7), ctx(task))
        assert first == OPERATIONS[name].apply(record, random.Random(7), ctx(task))


# ---- EDA on free text ------------------------------------------------------------------------

TEXT = {"input": "jump opposite left after walk twice", "target": "I_WALK I_WALK I_TURN_LEFT"}
VOCAB = sorted({"jump", "walk", "run", "look", "left", "right", "twice", "thrice", "and", "after", "opposite"})


def test_eda_ops():
    words = TEXT["input"].split()
    for seed in range(50):
        new = apply("random_deletion", "scan_simple", TEXT, seed, VOCAB)
        kept = new["input"].split()
        assert 1 <= len(kept) < len(words) and new["target"] == TEXT["target"]
        it = iter(words)
        assert all(word in it for word in kept)  # a subsequence: order kept

        new = apply("random_swap", "scan_simple", TEXT, seed, VOCAB)["input"].split()
        diff = [i for i in range(len(words)) if new[i] != words[i]]
        assert len(diff) == 2 and sorted(new) == sorted(words)

        new = apply("word_replacement", "scan_simple", TEXT, seed, VOCAB)["input"].split()
        diff = [i for i in range(len(words)) if new[i] != words[i]]
        assert len(diff) == 1 and new[diff[0]] in VOCAB

        new = apply("random_insertion", "gsm8k", TEXT, seed, VOCAB)["input"].split()
        i = next((i for i in range(len(words)) if new[i] != words[i]), len(words))
        assert len(new) == len(words) + 1 and new[i] in VOCAB and new[:i] + new[i + 1:] == words

    one = {"input": "jump", "target": "I_JUMP"}
    assert apply("random_deletion", "files", one, 0, VOCAB) is None
    assert apply("random_swap", "files", {"input": "walk walk", "target": "x"}, 0, VOCAB) is None
    assert apply("word_replacement", "files", one, 0, ["jump"]) is None  # nothing else to use
    assert apply("random_insertion", "files", one, 0, []) is None
    extra = dict(TEXT, steps=3, scratchpad="a , b")  # other keys come through as they are
    new = apply("random_swap", "files", extra, 0, VOCAB)
    assert (new["steps"], new["scratchpad"], new["target"]) == (3, "a , b", TEXT["target"])
    assert apply("random_swap", "files", TEXT, 3, VOCAB) == apply("random_swap", "files", TEXT, 3, VOCAB)


# ---- refusals --------------------------------------------------------------------------------

def test_check_supported():
    with pytest.raises(UserError) as error:
        check_supported(["rename_entities", "perturb_numbers"], "logic")
    message = str(error.value)
    assert "\n" not in message and "perturb_numbers" in message and "logic" in message
    assert all(name in message for name in supported("logic"))
    for task in TASKS:
        with pytest.raises(UserError, match="random_swap"):
            check_supported(["random_swap"], task)
    with pytest.raises(UserError, match="rename_entities"):
        check_supported(["rename_entities"], "gsm8k")
    with pytest.raises(UserError, match="no_such_op"):
        check_supported(["no_such_op"], "arith")
    check_supported(["swap_operands", "perturb_numbers"], "arith")
    check_supported(["random_deletion"], "scan_simple")
    with pytest.raises(UserError):  # apply refuses an unsupported task too
        OPERATIONS["perturb_numbers"].apply({"input": "x", "target": "y"}, random.Random(0), ctx("logic"))
