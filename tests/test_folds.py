"""k-fold cross-validation: folds partition the training pool by distinct input, fold i is the
val split, the test split never moves, and msr report aggregates the folds of a sweep."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from dataclasses import replace

import pytest
from conftest import TINY, TINY_MODEL, read_metrics, run_msr

from msr.config import ArithConfig, FilesConfig, PathsConfig, SplitConfig
from msr.data import load_data
from msr.data.folds import fold_of_inputs, fold_splits
from msr.errors import UserError
from msr.report.cli import main as report

ARITH = ArithConfig(train=SplitConfig(size=300, max_steps=1), val=SplitConfig(size=20), test=SplitConfig(size=30))


def multiset(rows: list[dict]) -> Counter:
    return Counter(json.dumps(r, sort_keys=True) for r in rows)


@pytest.fixture
def paths(tmp_path):
    return PathsConfig(data=str(tmp_path), cache=str(tmp_path / "cache"))


def test_folds_partition_the_distinct_inputs_evenly_and_deterministically():
    # 10 distinct inputs, some of them repeated: each sits in one fold with all its copies
    rows = [{"input": f"q{i % 10}", "target": str(i)} for i in range(23)]
    raw = {"train": rows, "val": [{"input": "v", "target": "0"}], "test": [{"input": "t", "target": "1"}]}
    fold_of = fold_of_inputs(rows, 3, seed=7)
    assert set(fold_of) == {f"q{i}" for i in range(10)}
    assert sorted(Counter(fold_of.values()).values()) == [3, 3, 4]  # dealt in turn: sizes differ by one input
    assert fold_of == fold_of_inputs(rows, 3, seed=7) and fold_of != fold_of_inputs(rows, 3, seed=8)
    cfg = replace(ARITH, folds=3, seed=7)
    vals = []
    for i in range(3):
        folded = fold_splits(raw, replace(cfg, fold=i))
        assert list(folded) == ["train", "val", "test"] and folded["test"] == raw["test"]
        assert folded["val"] == [r for r in rows if fold_of[r["input"]] == i]  # in the pool's order
        assert folded["train"] == [r for r in rows if fold_of[r["input"]] != i]
        assert not {r["input"] for r in folded["val"]} & {r["input"] for r in folded["train"]}
        vals.append(folded["val"])
    # the folds cover the pool exactly once: each row is in one val, and in train for the other folds
    assert multiset([r for val in vals for r in val]) == multiset(rows)


def test_a_task_folds_its_training_split_and_keeps_its_test_split(paths):
    plain = load_data(ARITH, paths)
    pool = plain.raw["train"]
    assert len({r["input"] for r in pool}) < len(pool)  # one-step arith repeats inputs: the case that matters
    vals = []
    for i in range(4):
        data = load_data(replace(ARITH, folds=4, fold=i), paths)
        assert data.raw["test"] == plain.raw["test"] and data.splits["test"] == plain.splits["test"]
        assert multiset(data.raw["train"] + data.raw["val"]) == multiset(pool)
        assert data.overlap["val/train"] == 0
        assert data.raw == load_data(replace(ARITH, folds=4, fold=i), paths).raw  # deterministic
        vals.append({r["input"] for r in data.raw["val"]})
    assert all(not a & b for n, a in enumerate(vals) for b in vals[n + 1:])
    assert set().union(*vals) == {r["input"] for r in pool}


def test_data_from_files_fold_too(tmp_path, paths):
    rows = [{"input": f"x {i % 40}", "target": str(i % 3)} for i in range(120)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "test.jsonl").write_text(json.dumps({"input": "held", "target": "1"}) + "\n")
    cfg = FilesConfig(path=str(tmp_path), folds=5, fold=3, val_ratio=0.0)
    data = load_data(cfg, paths)
    assert [r["input"] for r in data.raw["test"]] == ["held"]
    val_inputs = {r["input"] for r in data.raw["val"]}
    assert len(val_inputs) == 8 and len(data.raw["val"]) == 24  # 40 inputs / 5 folds, each 3 times
    assert not val_inputs & {r["input"] for r in data.raw["train"]} and len(data.raw["train"]) == 96
    # msr evaluate split=val leaves out what the run trained on, and scores its fold, not a val file
    (tmp_path / "val.jsonl").write_text(json.dumps({"input": "file val", "target": "1"}) + "\n")
    held_out = load_data(cfg, paths, exclude={r["input"] for r in data.raw["train"]}, split="val")
    assert held_out.raw == {"val": data.raw["val"]} and held_out.excluded == 0


def test_more_folds_than_distinct_inputs_is_refused(tmp_path, paths):
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"input": f"x {i % 4}", "target": "1"}) + "\n"
                                                  for i in range(50)))
    cfg = FilesConfig(path=str(tmp_path / "train.jsonl"), folds=5)
    with pytest.raises(UserError, match=r"data.folds=5: the training split has only 4 distinct inputs; lower"):
        load_data(cfg, paths)


@pytest.mark.parametrize("overrides, message", [
    (["data.folds=3", "data.fold=3"], "data.fold=3 is not allowed: must be in [0, 2] with data.folds=3; "
                                      "all of them: -m data.fold=range(3)"),
    (["data.folds=3", "data.fold=-1"], "data.fold=-1 is not allowed: must be in [0, 2]"),
    (["data.folds=1"], "data.folds=1 is not allowed: must be >= 2"),
    (["data.folds=-2"], "data.folds=-2 is not allowed: must be >= 2"),
    (["data.fold=2"], "data.fold=2 is not allowed: a fold needs data.folds=K (K >= 2) beside it"),
    (["data=mixture", "data.arith.folds=3"], "data.arith.folds=3 is not allowed: one vocabulary and presentation "
                                             "for the whole mixture: set data.folds instead"),
])
def test_bad_folds_are_one_line_before_any_work(overrides, message, capsys, in_tmp):
    assert run_msr("train", *TINY, *overrides) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("msr: error: ") and message in err, err
    assert not (in_tmp / "outputs").exists()


def test_a_fold_sweep_is_one_report_row_over_the_folds(in_tmp):
    args = [*TINY, *TINY_MODEL["lstm"], "data.train.size=200", "trainer.max_steps=10", "trainer.eval_every=10",
            "data.folds=2"]
    assert run_msr("train", "-m", *args, "data.fold=range(2)") == 0
    [sweep] = list(in_tmp.glob("outputs/multirun/train/*/*"))
    jobs = [read_metrics(sweep / str(job)) for job in range(2)]
    assert all(job["status"] == "completed" for job in jobs)
    # each fold validated on its own rows, tested on the same ones
    assert jobs[0]["metrics"]["val/loss"] != jobs[1]["metrics"]["val/loss"]
    tests = [[json.loads(line)["input"] for line in (sweep / str(job) / "predictions.jsonl").open()] for job in range(2)]
    assert tests[0] == tests[1] and len(tests[0]) == 40
    assert report([str(sweep), "--no-plots"]) == 0
    [row] = list(csv.DictReader((sweep / "report.csv").open()))
    accuracies = [job["metrics"]["test/accuracy"] for job in jobs]
    assert row["n"] == "2"
    assert float(row["test/accuracy_mean"]) == pytest.approx(sum(accuracies) / 2)
    assert float(row["test/accuracy_std"]) == pytest.approx(abs(accuracies[0] - accuracies[1]) / math.sqrt(2))
    assert "replicates over seed, data.fold" in (sweep / "report.md").read_text()
