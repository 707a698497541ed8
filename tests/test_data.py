"""The arith task: labels checked by an independent solver, disjoint splits, determinism, batching."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch

from msr.config import ArithConfig, ChainConfig, ListOpsConfig, LogicConfig, SplitConfig
from msr.data.batching import IGNORE, BatchOrder, encode
from msr.data.splits import generate_splits
from msr.data.tasks import arith, chain, listops, logic
from msr.data.tokenizer import TextTokenizer
from msr.errors import UserError

SMALL = ArithConfig(train=SplitConfig(size=2000), val=SplitConfig(size=100), test=SplitConfig(size=200))


def python_answer(text: str, modulus: int) -> str:
    """Independent solver: parenthesise left to right and let Python evaluate it."""
    words = text.removesuffix("=").split()
    expression = words[0]
    for op, x in zip(words[1::2], words[2::2]):
        expression = f"({expression} {op} {x})"
    return str(eval(expression) % modulus)


def test_the_issue_example():
    assert arith.answer("7 + 5 * 3 - 2 =", 10) == "4"


def test_labels_agree_with_python_on_every_split():
    splits = generate_splits(SMALL)
    for records in splits.values():
        for r in records:
            assert r["target"] == python_answer(r["input"], 10)
            assert r["steps"] == r["input"].count(" ") // 2 and 1 <= r["steps"] <= 4


def test_other_moduli_and_operators():
    cfg = replace(SMALL, modulus=7, operators="+*")
    rng = random.Random(0)
    for _ in range(200):
        r = arith.sample(rng, 3, cfg)
        assert r["target"] == python_answer(r["input"], 7) and "-" not in r["input"]


def test_splits_are_disjoint_sized_and_deterministic():
    splits = generate_splits(SMALL)
    assert {k: len(v) for k, v in splits.items()} == {"train": 2000, "val": 100, "test": 200}
    train, val, test = ({r["input"] for r in splits[k]} for k in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    assert len(val) == 100 and len(test) == 200  # held-out splits have no repeats
    assert generate_splits(SMALL) == splits
    assert generate_splits(replace(SMALL, seed=7)) != splits


def test_steps_range_is_per_split():
    cfg = replace(SMALL, test=SplitConfig(size=200, min_steps=5, max_steps=8))
    steps = {r["steps"] for r in generate_splits(cfg)["test"]}
    assert steps == {5, 6, 7, 8}


def test_resizing_train_keeps_the_test_set():
    bigger = replace(SMALL, train=SplitConfig(size=3000))
    assert generate_splits(bigger)["test"] == generate_splits(SMALL)["test"]


def test_exhausted_step_count_is_a_clear_error():
    cfg = replace(SMALL, val=SplitConfig(size=300, min_steps=1, max_steps=1),
                  test=SplitConfig(size=100, min_steps=1, max_steps=1))
    with pytest.raises(UserError, match="data.val: cannot draw 300 examples: the 300 inputs with 1 step"):
        generate_splits(cfg)


def test_encoding_puts_labels_on_target_tokens_only():
    records = [{"input": "1 + 2 =", "target": "3", "steps": 1}, {"input": "4 =", "target": "4", "steps": 0}]
    tok = TextTokenizer.build(r["input"] + " " + r["target"] for r in records)
    split = encode(records, tok)
    ids = lambda words: [tok.tokenizer.token_to_id(w) for w in words.split()]
    # sequence "1 + 2 = <sep> 3 <eos>": inputs drop the last token, labels are the next token
    assert split.inputs[0].tolist() == ids("1 + 2 =") + [tok.sep_id] + ids("3")
    assert split.labels[0].tolist() == [IGNORE] * 4 + ids("3") + [tok.eos_id]
    assert split.lengths.tolist() == [6, 4]
    assert split.labels[1].tolist() == [IGNORE, IGNORE, *ids("4"), tok.eos_id, IGNORE, IGNORE]
    assert split.inputs[1, 4:].tolist() == [tok.pad_id, tok.pad_id]
    inputs, labels = split.batch(torch.tensor([1]))
    assert inputs.shape == (1, 4) and labels.shape == (1, 4)


def test_unknown_symbols_are_counted():
    tok = TextTokenizer.build(["1 + 2 = 3"])
    split = encode([{"input": "1 * 2 =", "target": "9"}], tok)
    assert split.unknown_tokens == 2
    assert split.steps.tolist() == [-1]


def test_the_training_log_gives_distinct_inputs_beside_rows_and_warns_of_repeats(caplog):
    from types import SimpleNamespace

    from msr.commands.train import encode_splits
    from msr.config import FilesConfig

    rows = [{"input": f"{i % 3} + 1 =", "target": "x", "steps": 2 if i % 3 == 0 else 1} for i in range(12)]
    splits = {"train": rows, "val": rows[:3], "test": rows[:2]}
    tokenizer = TextTokenizer.build(r["input"] + " " + r["target"] for r in rows)
    caplog.set_level("INFO", logger="msr")
    cfg = SimpleNamespace(data=FilesConfig(path="mine.jsonl"), model=SimpleNamespace())
    encode_splits(splits, tokenizer, cfg, "cpu")
    assert "data files: train 12 rows (3 distinct inputs), val 3 rows (3 distinct inputs), test 2 rows (2 distinct " \
           "inputs); vocabulary" in caplog.text
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["train: 12 rows but only 3 distinct inputs (75.0% repeats): the data holds its inputs several "
                        "times (with 1 step: 2 in 8 rows; with 2 steps: 1 in 4 rows), so they weigh more in training "
                        "and count more than once in accuracy; deduplicate the data unless that is meant"]


def test_batch_order_is_a_function_of_seed_and_step():
    order, again = BatchOrder(100, 8, seed=3), BatchOrder(100, 8, seed=3)
    batches = [order(k) for k in range(30)]
    assert all(torch.equal(again(k), batches[k]) for k in reversed(range(30)))
    epoch = torch.cat(batches[:12])
    assert len(set(epoch.tolist())) == 96  # 12 full batches per epoch, no repeats within it
    assert not torch.equal(batches[0], batches[12])


def python_chain(text: str, modulus: int) -> tuple[str, int]:
    """Independent solver: run the assignments as Python, and count hops by walking the graph."""
    *statements, query = [part.strip() for part in text.split(";")]
    scope: dict = {}
    parents = {}
    for statement in statements:
        name, expression = (side.strip() for side in statement.split("="))
        exec(f"{name} = ({expression}) % {modulus}", {}, scope)
        words = expression.split()
        parents[name] = words[0] if len(words) == 3 else None
    variable, hops = query.rstrip("?").strip(), 0
    answer = str(scope[variable])
    while parents[variable] is not None:
        variable, hops = parents[variable], hops + 1
    return answer, hops


def test_chain_example_from_the_issue():
    assert chain.answer("a = 3 ; b = a + 2 ; c = b * 2 ; d = 7 ; c ?", 100) == "10"


def test_chain_labels_and_steps_agree_with_an_independent_solver():
    cfg = ChainConfig(train=SplitConfig(size=1000, min_steps=1, max_steps=6), val=SplitConfig(size=100),
                      test=SplitConfig(size=200, min_steps=1, max_steps=8), distractors=3)
    splits = generate_splits(cfg)
    for records in splits.values():
        for r in records:
            assert python_chain(r["input"], 100) == (r["target"], r["steps"])
            assert r["input"].count("=") == r["steps"] + 1 + 3
    assert {r["steps"] for r in splits["test"]} == set(range(1, 9))


def test_chain_refuses_more_variables_than_letters():
    from msr.errors import ConfigError

    cfg = ChainConfig(test=SplitConfig(size=10, min_steps=1, max_steps=20), distractors=6)
    with pytest.raises(ConfigError, match="max_steps \\+ 1 \\+ distractors must be <= 26"):
        cfg.validate("data.")


def python_listops(text: str) -> tuple[str, int]:
    """Independent solver: rewrite the lists as Python calls and evaluate; depth by bracket count."""
    import re
    import statistics

    functions = {"MAX": lambda *xs: max(xs), "MIN": lambda *xs: min(xs),
                 "MED": lambda *xs: int(statistics.median(xs)), "SM": lambda *xs: sum(xs) % 10}
    code = re.sub(r"\[(\w+)", r"\1(", text).replace(" ]", ")")
    code = re.sub(r"(?<=[\w)]) (?=[\w(])", ", ", code)
    depth = deepest = 0
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        deepest = max(deepest, depth)
    return str(eval(code, functions)), deepest


def test_listops_example_and_median():
    assert listops.answer("[MAX 2 9 [MIN 4 7 ] 0 ]") == "9"
    assert listops.answer("[MED 1 4 2 9 ]") == "3" and listops.answer("[MED 5 1 3 ]") == "3"
    assert listops.answer("[SM 9 8 7 ]") == "4"


def test_listops_labels_and_depth_agree_with_an_independent_solver():
    cfg = ListOpsConfig(train=SplitConfig(size=1000, min_steps=1, max_steps=5), val=SplitConfig(size=100),
                        test=SplitConfig(size=200, min_steps=1, max_steps=7), max_arity=5, subtree_prob=0.3)
    splits = generate_splits(cfg)
    for records in splits.values():
        for r in records:
            assert python_listops(r["input"]) == (r["target"], r["steps"])
    assert {r["steps"] for r in splits["test"]} == set(range(1, 8))


def test_listops_operators_are_configurable():
    cfg = ListOpsConfig(operators=["SM"], train=SplitConfig(size=50), val=SplitConfig(size=20),
                        test=SplitConfig(size=20))
    for r in generate_splits(cfg)["train"]:
        assert all(w in ("[SM", "]") or w.isdigit() for w in r["input"].split())


def backward_proof(text: str) -> tuple[str, int | None]:
    """Independent solver: prove the question (or its negation) backwards from the goal,
    returning the label and the number of rule applications in the shortest proof."""
    import re

    facts = set(re.findall(r"(\w+) is (\w+) \.", text.split("Question")[0]))
    rules = re.findall(r"If someone is (\w+) then they are (not )?(\w+) \.", text)
    who, goal = re.search(r"Question : (\w+) is (\w+) \?", text).groups()

    def depth(attribute: str, positive: bool, seen: frozenset) -> int | None:
        if positive and (who, attribute) in facts:
            return 0
        found = [depth(a, True, seen | {attribute}) for a, negated, b in rules
                 if b == attribute and bool(negated) != positive and a not in seen]
        found = [d + 1 for d in found if d is not None]
        return min(found) if found else None

    proof, refutation = depth(goal, True, frozenset()), depth(goal, False, frozenset())
    if proof is not None:
        return "True", proof
    if refutation is not None:
        return "False", refutation
    return "Unknown", None


def test_logic_labels_and_steps_agree_with_backward_chaining():
    cfg = LogicConfig(train=SplitConfig(size=1500, min_steps=1, max_steps=6), val=SplitConfig(size=100),
                      test=SplitConfig(size=300, min_steps=1, max_steps=8), distractors=5)
    splits = generate_splits(cfg)
    labels = []
    for records in splits.values():
        for r in records:
            label, steps = backward_proof(r["input"])
            assert label == r["target"], r["input"]
            assert steps in (r["steps"], None)
            labels.append(label)
    shares = {label: labels.count(label) / len(labels) for label in logic.LABELS}
    assert all(0.28 < share < 0.39 for share in shares.values()), shares  # three balanced classes


def test_logic_example():
    text = ("Anne is big . If someone is big then they are kind . If someone is kind then they are "
            "not red . Bob is quiet . Question : Anne is red ?")
    assert logic.answer(text) == "False" == backward_proof(text)[0]
    assert logic.answer(text.replace("Anne is big .", "")) == "Unknown"
