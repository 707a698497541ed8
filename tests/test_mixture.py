"""data=mixture: built-in tasks drawn together, by weight, each with its own settings; one
vocabulary; accuracy per task and per task x steps in metrics.json, for msr train and msr evaluate."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from conftest import TINY_MODEL, read_metrics, run_msr
from msr.config import ArithConfig, MixtureConfig, PathsConfig, SplitConfig
from msr.config.data import MixtureSplitConfig
from msr.data import load_data
from msr.data.batching import BatchOrder
from msr.eval.by_task import task_breakdown

SMALL = ["data.val.size=40", "data.test.size=60", "trainer.batch_size=16", "scheduler.warmup_steps=2"]


def mixture(**keys) -> MixtureConfig:
    cfg = MixtureConfig(**keys)
    cfg.validate("data.")
    return cfg


@pytest.mark.parametrize("weights, size, expected", [
    ([3, 1], 2000, [1500, 500]),
    ([2, 1], 10, [7, 3]),  # 6.67 / 3.33: the larger remainder gets the spare row
    ([1, 1, 1], 100, [34, 33, 33]),  # three equal remainders: the spare row goes to the first task
    ([1, 0, 1], 5, [3, 0, 2]),  # a task of weight 0 is not drawn
])
def test_split_sizes_are_shared_by_largest_remainder(weights, size, expected):
    tasks = ["arith", "logic", "kinship"][: len(weights)]
    cfg = mixture(tasks=tasks, weights=weights, train=MixtureSplitConfig(size=size))
    assert cfg.rows("train") == dict(zip(tasks, expected))


def test_rows_follow_the_weights_and_each_task_keeps_its_own_settings(in_tmp):
    overrides = ["data=mixture", "data.tasks=[arith,logic]", "data.weights=[3,1]", "data.train.size=2000",
                 "data.val.size=40", "data.test.size=40", "data.arith.train.max_steps=2", "data.logic.distractors=1"]
    assert run_msr("data", *overrides, "hydra.run.dir=d") == 0
    summary = read_metrics(in_tmp / "d")["data"]["splits"]
    assert summary["train"]["tasks"] == {"arith": 1500, "logic": 500}  # exact, not only about 75/25
    assert summary["val"]["tasks"] == summary["test"]["tasks"] == {"arith": 30, "logic": 10}

    cfg = MixtureConfig(tasks=["arith", "logic"], weights=[3, 1], train=MixtureSplitConfig(size=2000),
                        val=MixtureSplitConfig(size=40), test=MixtureSplitConfig(size=40))
    cfg.arith.train.max_steps, cfg.logic.distractors = 2, 1
    cfg.validate("data.")
    splits = load_data(cfg, PathsConfig()).splits
    train = splits["train"]
    assert {r["steps"] for r in train if r["task"] == "arith"} == {1, 2}  # its own train.max_steps
    assert {r["steps"] for r in train if r["task"] == "logic"} == {1, 2, 3, 4}
    # each task's test rows are what the task alone draws at that size, in the mixture's own order
    alone = load_data(ArithConfig(test=SplitConfig(size=30)), PathsConfig()).splits["test"]
    assert Counter(r["input"] for r in splits["test"] if r["task"] == "arith") == Counter(r["input"] for r in alone)
    # interleaved: the batches training draws hold the tasks in proportion (binomial, 4 sigma)
    order = BatchOrder(len(train), 32, seed=0)
    drawn = [train[i]["task"] for k in range(20) for i in order(k).tolist()]
    share = drawn.count("arith") / len(drawn)
    assert abs(share - 0.75) < 4 * math.sqrt(0.75 * 0.25 / len(drawn)), share


def test_task_breakdown_counts_by_task_and_steps():
    rows = [{"task": "logic", "steps": 1}, {"task": "arith", "steps": 1}, {"task": "arith", "steps": 2},
            {"task": "arith", "steps": 2}, {"task": "logic", "steps": 3}]
    correct = [True, True, False, True, False]
    assert task_breakdown(rows, correct) == {
        "accuracy_by_task": {"arith": 2 / 3, "logic": 0.5},
        "accuracy_by_task_steps": {"arith": {"1": 1.0, "2": 0.5}, "logic": {"1": 1.0, "3": 0.0}},
    }
    assert task_breakdown([{"steps": 1}], [True]) == {}  # one task's data: no breakdown


def recomputed(predictions: Path) -> tuple[dict, dict]:
    """accuracy_by_task and accuracy_by_task_steps, counted by hand from predictions.jsonl."""
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    hits: dict = {}
    for line in lines:
        for key in (line["task"], (line["task"], str(line["steps"]))):
            hits.setdefault(key, []).append(line["correct"])
    by_task = {t: sum(v) / len(v) for t, v in hits.items() if isinstance(t, str)}
    by_steps: dict = {}
    for key, v in hits.items():
        if isinstance(key, tuple):
            by_steps.setdefault(key[0], {})[key[1]] = sum(v) / len(v)
    return by_task, by_steps


def assert_nested_equal(reported: dict, recounted: dict) -> None:
    assert reported.keys() == recounted.keys()
    for task, by_steps in recounted.items():
        assert reported[task] == pytest.approx(by_steps), task


@pytest.fixture(scope="module")
def mixture_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("mixture") / "run"
    # few answers (arith modulo 3, logic's three labels) and a high rate: 40 steps get some of
    # them right, so the per-task numbers checked are not all zeros
    assert run_msr("train", "data=mixture", "data.tasks=[arith,logic,kinship]", "data.weights=[1,2,1]",
                   "data.arith.modulus=3", "data.logic.distractors=0", "data.train.size=400", *SMALL,
                   "trainer.max_steps=40", "trainer.eval_every=20", "optimizer.lr=0.02", *TINY_MODEL["lstm"],
                   f"hydra.run.dir={run}") == 0
    return run


def test_train_reports_accuracy_by_task_as_its_predictions_count_it(mixture_run):
    metrics = read_metrics(mixture_run)
    by_task, by_steps = recomputed(mixture_run / "predictions.jsonl")
    assert set(metrics["accuracy_by_task"]) == {"arith", "logic", "kinship"}
    assert metrics["accuracy_by_task"] == pytest.approx(by_task)
    assert_nested_equal(metrics["accuracy_by_task_steps"], by_steps)
    lines = [json.loads(line) for line in (mixture_run / "predictions.jsonl").read_text().splitlines()]
    assert Counter(line["task"] for line in lines) == {"arith": 15, "logic": 30, "kinship": 15}
    overall = sum(line["correct"] for line in lines) / len(lines)
    assert metrics["metrics"]["test/accuracy"] == pytest.approx(overall)
    assert any(v > 0 for v in by_task.values()), by_task  # a check of something, not of zeros
    history = [json.loads(line) for line in (mixture_run / "history.jsonl").read_text().splitlines()]
    tested = next(h for h in history if "test/accuracy" in h)
    assert {k: v for k, v in tested.items() if "by_task" in k} == pytest.approx(
        {f"test/accuracy_by_task/{t}": v for t, v in by_task.items()})


@pytest.mark.slow  # an end-to-end run; CI runs it
def test_evaluate_scores_a_mixture_run_by_task(mixture_run, tmp_path):
    assert run_msr("evaluate", f"run={mixture_run}", f"hydra.run.dir={tmp_path / 'ev'}") == 0
    evaluated = read_metrics(tmp_path / "ev")
    by_task, by_steps = recomputed(tmp_path / "ev" / "predictions.jsonl")
    assert evaluated["accuracy_by_task"] == pytest.approx(by_task)
    assert_nested_equal(evaluated["accuracy_by_task_steps"], by_steps)
    assert evaluated["held_out"]["overlap"] == 0
    # the run's own test split again, decoded greedily: exactly what teacher-forced exact match counted
    assert by_task == pytest.approx(read_metrics(mixture_run)["accuracy_by_task"])


@pytest.mark.parametrize("overrides, expected", [
    (["data.weights=[1,2]"], "data.weights=[1.0, 2.0] is not allowed: give one weight per task of "
                             "data.tasks=['arith', 'logic', 'kinship'] (3), or none for equal weights"),
    (["data.tasks=[arith,sudoku]"], "data.tasks=['arith', 'sudoku'] is not allowed: 'sudoku' is not a built-in "
                                    "task; known: arith, chain, listops, logic, kinship"),
    (["data.tasks=[arith,logic,arith]"], "'arith' is named twice"),
    (["data.tasks=[arith,logic]", "data.weights=[1,-1]"], "data.weights=[1.0, -1.0] is not allowed: weights must be >= 0"),
    (["data.tasks=[arith,logic]", "data.weights=[0,0]"], "data.weights=[0.0, 0.0] is not allowed: at least one "
                                                         "weight must be > 0"),
    (["data.chain.modulus=7"], "data.chain.modulus=7 is not allowed: chain is not in data.tasks"),
    (["data.arith.train.size=5"], "data.arith.train.size=5 is not allowed: a mixture shares data.train.size out"),
    (["data.logic.scratchpad=true"], "data.logic.scratchpad=True is not allowed: one vocabulary and presentation "
                                     "for the whole mixture: set data.scratchpad instead"),
])
def test_bad_mixtures_are_refused_in_one_line_before_any_work(overrides, expected, capsys, in_tmp):
    assert run_msr("train", "data=mixture", *overrides, "hydra.run.dir=run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("msr: error: ") and expected in err, err
    assert not (in_tmp / "run").exists()
