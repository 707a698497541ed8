"""`msr data`, and the data options as `msr train` uses them: scratchpad, templates, real data sets."""

from __future__ import annotations

import json

import pytest
from conftest import TINY, TINY_MODEL, read_metrics, run_msr

SIZES = ["data.train.size=300", "data.val.size=30", "data.test.size=60"]


def test_msr_data_summarises_and_exports_splits_that_load_back(in_tmp, capsys):
    assert run_msr("data", "data=kinship", *SIZES, "data.test.max_steps=6", "--export", "hydra.run.dir=run") == 0
    out = capsys.readouterr().out
    assert "steps histogram" in out and "overlap of inputs between splits" in out and "Who is" in out
    summary = read_metrics(in_tmp / "run")["data"]
    test = summary["splits"]["test"]
    assert test["examples"] == 60 and set(test["steps"]) == {"1", "2", "3", "4", "5", "6"}
    assert sum(test["steps"].values()) == 60
    assert summary["overlap"] == {"val/train": 0, "test/train": 0, "test/val": 0}
    exported = [json.loads(line) for line in (in_tmp / "run/data/test.jsonl").read_text().splitlines()]
    assert len(exported) == 60 and set(exported[0]) == {"input", "target", "steps", "scratchpad"}

    # the export is a data set: data=files reads it back, steps and all
    assert run_msr("data", "data=files", "data.path=run/data", "hydra.run.dir=again") == 0
    again = read_metrics(in_tmp / "again")["data"]["splits"]
    assert again["test"]["steps"] == test["steps"] and again["train"]["examples"] == 300


def test_msr_data_counts_distinct_inputs_and_warns_when_a_split_is_mostly_repeats(in_tmp, capsys):
    # one-step arith has a few hundred inputs: 2,000 training rows must repeat them
    assert run_msr("data", "data=arith", "data.train.size=2000", "data.train.max_steps=1", "data.val.size=40",
                   "data.test.size=40", "--export", "hydra.run.dir=run") == 0
    captured = capsys.readouterr()
    train = [json.loads(line) for line in (in_tmp / "run/data/train.jsonl").read_text().splitlines()]
    distinct = len({r["input"] for r in train})
    assert distinct < 1000
    splits = read_metrics(in_tmp / "run")["data"]["splits"]
    assert splits["train"]["examples"] == 2000 and splits["train"]["distinct_inputs"] == distinct
    assert splits["train"]["distinct_inputs_by_steps"] == {"1": distinct}
    val = [json.loads(line) for line in (in_tmp / "run/data/val.jsonl").read_text().splitlines()]
    by_steps = {str(k): len({r["input"] for r in val if r["steps"] == k}) for k in {r["steps"] for r in val}}
    assert splits["val"]["distinct_inputs"] == 40 and splits["val"]["distinct_inputs_by_steps"] == by_steps
    assert f"2,000 / {distinct:,}" in captured.out  # the steps histogram: rows / distinct inputs
    warnings = [line for line in captured.err.splitlines() if "distinct inputs (" in line]
    assert len(warnings) == 1, captured.err  # val and test are drawn without repeats
    assert (f"train: 2,000 rows but only {distinct:,} distinct inputs ({1 - distinct / 2000:.1%} repeats): the task "
            f"has few inputs with 1 step ({distinct:,} in 2,000 rows)") in warnings[0]


def test_msr_data_shows_label_balance_for_classification(in_tmp, capsys):
    assert run_msr("data", "data=logic", *SIZES, "hydra.run.dir=run") == 0
    labels = read_metrics(in_tmp / "run")["data"]["splits"]["train"]["labels"]
    assert set(labels) == {"True", "False", "Unknown"} and sum(labels.values()) == 300
    assert "labels (share of split)" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["data", "train"])
def test_data_and_train_both_refuse_a_file_too_small_to_carve(command, in_tmp, capsys):
    (in_tmp / "tiny.jsonl").write_text("".join(json.dumps({"input": f"x {i}", "target": "y"}) + "\n" for i in range(4)))
    assert run_msr(command, "data=files", "data.path=tiny.jsonl") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "KeyError" not in err
    assert ("msr: error: data.val_ratio=0.1 carves 0 of the 4 rows into val; raise data.val_ratio to at least 0.13 "
            "or give a val file (data.val_file=)\n") in err


def test_training_with_a_scratchpad_and_a_template(in_tmp):
    assert run_msr("train", "data=arith", "data.scratchpad=true", "data.template='Q: {input} A:'", *TINY,
                   *TINY_MODEL["lstm"], "hydra.run.dir=run") == 0
    metrics = read_metrics(in_tmp / "run")
    assert metrics["status"] == "completed" and set(metrics["accuracy_by_steps"]) == {"1", "2", "3", "4"}
    vocab = json.loads((in_tmp / "run/checkpoints/best/tokenizer.json").read_text())["model"]["vocab"]
    assert {"####", "Q:", "A:", ","} <= set(vocab)


def test_sequences_longer_than_the_model_are_counted_not_cut(in_tmp, capsys):
    code = run_msr("train", "data=arith", "data.test.max_steps=8", *TINY, *TINY_MODEL["transformer"],
                   "model.max_len=12", "hydra.run.dir=run")
    err = capsys.readouterr().err
    assert code == 2
    assert "model.max_len=12 is shorter than some sequences (" in err and "test " in err and "%" in err
    assert read_metrics(in_tmp / "run")["status"] == "failed"


def test_a_corpus_is_refused_by_train_with_the_reason(in_tmp, capsys):
    (in_tmp / "corpus.txt").write_text("to be or not to be\n" * 100)
    code = run_msr("train", "data=files", "data.path=corpus.txt", "data.format=text", *TINY_MODEL["lstm"],
                   "hydra.run.dir=run")
    assert code == 2 and "is a text corpus" in capsys.readouterr().err


# --- the real data sets in ../shared/data (skipped where that folder is absent) ---


def test_scan_simple_loads_with_steps_from_composition_words(shared_data, in_tmp, monkeypatch):
    monkeypatch.setenv("MSR_DATA", str(shared_data))
    assert run_msr("data", "data=scan_simple", "hydra.run.dir=run") == 0
    splits = read_metrics(in_tmp / "run")["data"]["splits"]
    assert {k: v["examples"] for k, v in splits.items()} == {"train": 15892, "val": 836, "test": 4182}
    assert splits["train"]["examples"] + splits["val"]["examples"] == 16728  # val is carved from train
    assert min(map(int, splits["test"]["steps"])) == 0 and max(map(int, splits["test"]["steps"])) == 5


def test_gsm8k_answer_scratchpad_and_steps(shared_data):
    from msr.cli import CONF_DIR
    from msr.config import register, to_object
    from msr.data import load_data
    from msr.overrides import compose_config

    register()
    cfg = to_object(compose_config(CONF_DIR, "data", ["data=gsm8k", f"paths.data={shared_data}"]))
    data = load_data(cfg.data, cfg.paths).splits
    natalia = next(r for rows in data.values() for r in rows if r["input"].startswith("Natalia sold clips"))
    assert natalia["target"] == "72" and natalia["steps"] == 2
    assert natalia["scratchpad"].splitlines()[1].endswith("72 clips altogether in April and May.")
    assert len(data["test"]) == 1319 and len(data["train"]) + len(data["val"]) == 7473
    assert {r["steps"] for r in data["test"]} >= set(range(2, 9))


def test_tinyshakespeare_splits_90_10_like_nanogpt(shared_data, in_tmp, monkeypatch):
    monkeypatch.setenv("MSR_DATA", str(shared_data))
    assert run_msr("data", "data=tinyshakespeare", "hydra.run.dir=run") == 0
    summary = read_metrics(in_tmp / "run")["data"]
    assert summary["corpus"] and summary["vocab_size"] == 4 + 65  # nanoGPT's 65 characters
    assert summary["splits"]["train"]["characters"] == 1003854 and summary["splits"]["val"]["characters"] == 111540
