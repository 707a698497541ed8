"""Test sets drawn at evaluate time never hold an input the evaluated runs trained or were
selected on (their own, an ensemble member's, an init run's), and the record says so."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import TINY, TINY_MODEL, read_metrics, run_msr

from msr.eval.scores import compounding_fit, describe_fit, steps_breakdown

LSTM = [*TINY, *TINY_MODEL["lstm"]]
TINY_LM = ["model=transformer", "model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.d_ff=64",
           "model.max_len=64", "data.block_size=32", "trainer.batch_size=8", "trainer.max_steps=20",
           "trainer.eval_every=10", "trainer.log_every=5", "scheduler.warmup_steps=2"]


def inputs(path) -> list[str]:
    return [json.loads(line)["input"] for line in path.read_text().splitlines()]


def split_inputs(run, *splits) -> set[str]:
    """What a run trained on, rebuilt from its config by `msr data --export`, as a user would check."""
    overrides = [o for o in yaml.safe_load((run / ".hydra/overrides.yaml").read_text()) if o.startswith("data")]
    folder = run.parent / f"{run.name}-data"
    if not folder.exists():
        assert run_msr("data", *overrides, "--export", f"hydra.run.dir={folder}") == 0
    return {r for split in splits for r in inputs(folder / f"data/{split}.jsonl")}


def test_a_longer_test_set_drawn_at_evaluate_time_holds_no_training_input(in_tmp):
    assert run_msr("train", *LSTM, "hydra.run.dir=run") == 0
    assert run_msr("evaluate", "run=run", "data.test.max_steps=8", "data.test.size=400", "hydra.run.dir=ev") == 0
    seen = split_inputs(in_tmp / "run", "train", "val")
    drawn = inputs(in_tmp / "ev/predictions.jsonl")
    assert len(drawn) == 400 and not set(drawn) & seen
    held_out = read_metrics(in_tmp / "ev")["held_out"]
    # the draw met training inputs (1- and 2-step arithmetic has few) and left each one out
    assert held_out["overlap"] == 0 and held_out["excluded"] > 0
    assert held_out["training_inputs"] == len(seen) and held_out["runs"] == ["run"]

    # the run's own settings draw exactly its own test set again
    assert run_msr("evaluate", "run=run", "hydra.run.dir=same") == 0
    assert set(inputs(in_tmp / "same/predictions.jsonl")) == split_inputs(in_tmp / "run", "test")
    assert read_metrics(in_tmp / "same")["held_out"]["excluded"] == 0


@pytest.mark.slow  # over 5 s; CI runs it
def test_an_ensemble_and_an_init_run_count_as_seen(in_tmp):
    assert run_msr("train", *LSTM, "hydra.run.dir=a") == 0
    assert run_msr("train", *LSTM, "data.seed=99", "hydra.run.dir=b") == 0
    assert run_msr("evaluate", "run=[a,b]", "data.test.max_steps=6", "data.test.size=300", "hydra.run.dir=ev") == 0
    drawn = set(inputs(in_tmp / "ev/predictions.jsonl"))
    assert not drawn & split_inputs(in_tmp / "b", "train", "val")
    assert not drawn & split_inputs(in_tmp / "a", "train", "val")
    assert read_metrics(in_tmp / "ev")["held_out"]["runs"] == ["a", "b"]

    # a model pretrained on other arithmetic inputs, then fine-tuned: both runs' inputs are seen
    assert run_msr("pretrain", "data=arith", "data.seed=5", "data.train.size=400", "data.val.size=40",
                   "data.test.size=40", *TINY_LM, "hydra.run.dir=pre") == 0
    assert run_msr("finetune", "init=pre", *TINY[:3], "data.seed=6", "trainer.max_steps=10",
                   "trainer.eval_every=5", "trainer.batch_size=16", "scheduler.warmup_steps=2",
                   "hydra.run.dir=ft") == 0
    assert run_msr("evaluate", "run=ft", "data.test.max_steps=6", "data.test.size=300", "hydra.run.dir=ev2") == 0
    drawn = set(inputs(in_tmp / "ev2/predictions.jsonl"))
    assert not drawn & split_inputs(in_tmp / "pre", "train", "val")
    assert not drawn & split_inputs(in_tmp / "ft", "train", "val")
    assert read_metrics(in_tmp / "ev2")["held_out"]["runs"] == ["ft", "pre"]


def test_too_few_unseen_inputs_and_changed_data_are_one_line_errors(in_tmp, capsys):
    # every 1-step input (300 of them) that test and val left is in a 2,000-row train split
    assert run_msr("train", *LSTM, "data.train.size=2000", "data.train.max_steps=1", "hydra.run.dir=run") == 0
    capsys.readouterr()
    assert run_msr("evaluate", "run=run", "data.test.max_steps=1", "data.test.size=100", "hydra.run.dir=ev") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("msr: error: data.test: cannot draw 100 examples") and "training data" in err

    # data that no longer rebuilds to what the run trained on cannot be kept apart from it
    metrics = read_metrics(in_tmp / "run")
    (in_tmp / "run/metrics.json").write_text(json.dumps({**metrics, "data_fingerprint": "0" * 16}))
    assert run_msr("evaluate", "run=run", "data.test.max_steps=3", "hydra.run.dir=ev2") == 2
    assert "is not what it trained on" in capsys.readouterr().err


def test_a_files_test_split_drops_rows_the_run_trained_on(in_tmp):
    rows = [{"input": f"{a} + {b} =", "target": str((a + b) % 10)} for a in range(10) for b in range(10)]
    (in_tmp / "set").mkdir()
    for split, part in {"train": rows[:80], "val": rows[80:90], "test": rows[85:]}.items():  # 5 val rows in test
        (in_tmp / f"set/{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    files = ["data=files", "data.path=set"]
    assert run_msr("train", *files, *TINY[3:], *TINY_MODEL["gru"], "hydra.run.dir=run") == 0
    assert run_msr("evaluate", "run=run", "hydra.run.dir=ev") == 0
    assert inputs(in_tmp / "ev/predictions.jsonl") == [r["input"] for r in rows[90:]]
    assert read_metrics(in_tmp / "ev")["held_out"] == {**read_metrics(in_tmp / "ev")["held_out"],
                                                       "overlap": 0, "excluded": 5}


def test_a_language_model_run_is_not_scored_as_a_task(in_tmp, capsys):
    assert run_msr("pretrain", "data=arith", "data.train.size=400", "data.val.size=40", "data.test.size=40",
                   *TINY_LM, "hydra.run.dir=pre") == 0
    capsys.readouterr()
    assert run_msr("evaluate", "run=pre", "hydra.run.dir=ev") == 2
    err = capsys.readouterr().err
    assert "is a language model" in err and "msr finetune init=pre" in err and err.count("\n") == 1


def test_a_chance_level_model_gets_no_compounding_fit():
    # 15.5% at every step count, as always answering the most frequent digit would score
    table = steps_breakdown([i % 1000 < 155 for i in range(4000)], [1 + i // 1000 for i in range(4000)])
    fit = compounding_fit(table, chance=0.155)
    assert "p" not in fit and "within 0.05 of chance (0.155)" in fit["no_fit"]
    assert describe_fit(fit).startswith("no fit:")
    noisy = steps_breakdown([True] * 60 + [False] * 40 + [True] * 40 + [False] * 60 + [True] * 58 + [False] * 42,
                            [1] * 100 + [2] * 100 + [3] * 100)
    assert "R²" in compounding_fit(noisy, chance=0.0)["no_fit"]
    real = steps_breakdown([True] * 90 + [False] * 10 + [True] * 72 + [False] * 28 + [True] * 58 + [False] * 42,
                           [1] * 100 + [2] * 100 + [3] * 100)
    assert compounding_fit(real, chance=0.1)["p"] == pytest.approx(0.8, abs=0.02)


@pytest.mark.slow
def test_a_checkpoint_without_its_run_folder_is_scored_and_said_unchecked(in_tmp, capsys):
    import shutil

    assert run_msr("train", *LSTM, "hydra.run.dir=run") == 0
    shutil.copytree(in_tmp / "run/checkpoints/best", in_tmp / "copied")
    capsys.readouterr()
    assert run_msr("evaluate", "run=copied", "data=arith", "data.test.size=40", "hydra.run.dir=ev") == 0
    assert "cannot be checked against it" in capsys.readouterr().err
    held_out = read_metrics(in_tmp / "ev")["held_out"]
    assert held_out["unchecked"] == ["copied"] and held_out["training_inputs"] == 0
    # on the training split there is nothing to keep apart, and nothing needs rebuilding
    assert run_msr("evaluate", "run=copied", "data=arith", "split=train", "hydra.run.dir=ev2") == 0
    assert "held_out" not in read_metrics(in_tmp / "ev2")
