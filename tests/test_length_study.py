"""scripts/length_study.py: the jobs it builds, the table of pooled Wilson intervals it writes
(on hand-made run folders: no training here), and bench_options.py's option configs."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import run_msr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import bench_options  # noqa: E402
import length_study  # noqa: E402


def test_job_command_pins_the_split_steps_seeds_and_budget(tmp_path):
    args = length_study.parse_args(["--steps", "300", "--out", str(tmp_path), "--", "device=cpu"])
    command = length_study.job_command("arith", "tf-rope+random", 1, args)
    assert command[1:4] == ["-m", "msr.cli", "train"]
    assert command[4:] == [
        "data=arith", "data.scratchpad=true",
        "model=transformer", "optimizer.lr=1e-3", "optimizer.weight_decay=0.1", "model.max_len=512",
        "model.positions=rope", "model.random_positions=true",
        "seed=1", "data.seed=1235", "data.test.size=1200",
        "trainer.max_steps=300", "trainer.eval_every=30",
        "data.train.min_steps=1", "data.train.max_steps=4", "data.val.min_steps=1", "data.val.max_steps=4",
        "data.test.min_steps=1", "data.test.max_steps=12",
        f"hydra.run.dir={tmp_path}/arith-tf-rope+random-s1",
        "device=cpu",
    ]
    lstm = length_study.job_command("kinship", "lstm-additive", 0, args)
    assert lstm[4:7] == ["data=kinship", "model=lstm", "model.attention=additive"]


def test_the_default_study_is_two_tasks_by_ten_variants_by_three_seeds(capsys):
    assert length_study.main(["--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * 10 * 3
    assert "lstm-dot+feeding" not in "\n".join(lines)  # known, but only on request
    assert lines[0].endswith("hydra.run.dir=outputs/length_study/arith-tf-learned-s0")
    assert lines[-1].endswith("hydra.run.dir=outputs/length_study/kinship-lstm-additive-s2")


@pytest.mark.parametrize("variant", list(length_study.VARIANTS))
def test_every_variant_composes_into_a_valid_train_config(variant, capsys, in_tmp):
    assert run_msr("train", *length_study.TASKS["arith"], *length_study.VARIANTS[variant], "--cfg", "job") == 0


@pytest.mark.parametrize("task", list(length_study.TASKS))
def test_every_task_composes_into_a_valid_train_config(task, capsys, in_tmp):
    assert run_msr("train", *length_study.TASKS[task], "--cfg", "job") == 0


def test_an_unknown_variant_is_refused_with_the_known_ones(capsys):
    with pytest.raises(SystemExit) as exit:
        length_study.parse_args(["--variants", "tf-learned,tf-xpos"])
    assert exit.value.code == 2
    assert "error: --variants: unknown tf-xpos; choose from tf-learned," in capsys.readouterr().err


def fake_run(folder: Path, answers: list[tuple[int, bool]], status: str = "completed") -> None:
    """A run folder as `msr train` leaves it: metrics.json and the test split's predictions.jsonl."""
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"status": status, "wall_seconds": 30.0}))
    (folder / "predictions.jsonl").write_text(
        "".join(json.dumps({"input": "x", "target": "y", "correct": ok, "steps": k}) + "\n" for k, ok in answers))


def test_table_pools_the_seeds_counts_into_wilson_intervals(tmp_path, capsys):
    # seed 0: step 1 8/10, step 5 0/10; seed 1: step 1 8/10, step 5 4/10; seed 2 failed: left out
    fake_run(tmp_path / "arith-tf-none-s0", [(1, i < 8) for i in range(10)] + [(5, False)] * 10)
    fake_run(tmp_path / "arith-tf-none-s1", [(1, i < 8) for i in range(10)] + [(5, i < 4) for i in range(10)])
    fake_run(tmp_path / "arith-tf-none-s2", [(1, True)] * 10, status="failed")
    argv = ["--table-only", "--out", str(tmp_path), "--tasks", "arith", "--variants", "tf-none,lstm",
            "--test-steps", "1-5"]
    assert length_study.main(argv) == 0
    text = (tmp_path / "table.md").read_text()
    assert text in capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == "| task | variant | seeds | 1 | 2 | 3 | 4 | 5 | all |"
    assert lines[1] == "|:---|:---|:---|---:|---:|---:|---:|---:|---:|"
    # Wilson 95% by hand: 16/20 -> centre (0.8 + 1.96²/40) / (1 + 1.96²/20) = 0.7517, half-width
    # 1.96 / 1.1921 * sqrt(0.8·0.2/20 + 1.96²/1600) = 0.1677 -> 0.584–0.919; 4/20 -> 0.081–0.416;
    # all 20/40 -> 0.352–0.648
    assert lines[2] == "| arith | tf-none | 2 | 0.80 (0.58–0.92) | – | – | – | 0.20 (0.08–0.42) | 0.50 (0.35–0.65) |"
    assert lines[3] == "| arith | lstm | 0 | – | – | – | – | – | – |"  # no runs yet
    assert "steps 1–4 were seen in training, 5–5 were not." in text
    assert "Mean wall time per run: 30 s." in text


def test_every_benchmarked_option_is_a_valid_change_of_its_baseline():
    for option, (family, changes) in bench_options.OPTIONS.items():
        base = bench_options.model_config(family)
        changed = dataclasses.replace(base, **changes)
        changed.validate("model.")
        assert changed != base, option
    assert not [o for o in bench_options.OPTIONS if o.endswith(bench_options.UNCHECKED)
                and "input_feeding" not in bench_options.OPTIONS[o][1]]


def test_every_benchmarked_option_trains_a_step_beside_its_baseline():
    """bench_options.py builds and trains each side: an option whose model no longer builds (the
    RNN options once asked their config for the Transformer's coupling_tokens) fails here."""
    args = argparse.Namespace(vocab=20, batch_size=4, warmup=1, repeats=1, steps=1, seq_len=8)
    split = bench_options.make_split(8, args.seq_len, args.vocab, torch.device("cpu"))
    for option, (family, changes) in bench_options.OPTIONS.items():
        config = dataclasses.replace(bench_options.model_config(family), **changes)
        step, params = bench_options.train_step(config, split, args, torch.device("cpu"))
        step()
        assert params > 0, option


@pytest.mark.parametrize("preset, expected", [
    ("arith_length", ["name: transformer", "positions: alibi", "random_target_gap: 64", "scratchpad_operands: true", "max_steps: 12"]),
    ("scan_length", ["name: transformer", "positions: alibi", "name: scan_length", "preprocess: scan_structured",
                     "max_steps: 8000", "monitor: val/loss"]),
    ("scan_length_lstm", ["name: lstm", "attention: dot", "name: scan_length", "preprocess: scan_structured",
                          "max_steps: 8000", "monitor: val/loss"]),
    ("kinship_length", ["name: transformer", "positions: none", "name: kinship", "max_steps: 12", "max_steps: 10000"]),
    ("chain_length", ["name: transformer", "positions: none", "name: chain", "modulus: 10", "max_steps: 6"]),
])
def test_length_presets_compose(preset, expected, capsys, in_tmp):
    assert run_msr("train", f"+experiment={preset}", "--cfg", "job") == 0
    out = capsys.readouterr().out
    assert [line for line in expected if line not in out] == []


def composed(capsys, *overrides) -> dict:
    assert run_msr("train", *overrides, "--cfg", "job") == 0
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("preset, task, variant, study_args", [
    ("arith_length", "arith-ops-sorted", "tf-alibi+gap", ["--test-size", "600", "--steps", "20000", "--",
                                                      "trainer.early_stopping.monitor=val/loss"]),
    ("chain_length", "chain", "tf-none", ["--test-size", "600", "--test-steps", "1-6", "--",
                                          "data.modulus=10", "trainer.batch_size=64", "data.train.size=100000"]),
])
def test_a_length_preset_is_the_study_run_it_reports(preset, task, variant, study_args, capsys, in_tmp):
    # the presets' comments and the README quote these study runs
    args = length_study.parse_args(["--steps", "10000", *study_args])
    command = [o for o in length_study.job_command(task, variant, 0, args)[4:] if not o.startswith("hydra.")]
    study = composed(capsys, *command)
    preset = composed(capsys, f"+experiment={preset}")
    for key in ("model", "data", "optimizer", "scheduler"):
        assert preset[key] == study[key], key
    assert {k: preset["trainer"][k] for k in ("max_steps", "batch_size", "early_stopping")} == \
        {k: study["trainer"][k] for k in ("max_steps", "batch_size", "early_stopping")}


def test_the_scan_length_preset_is_the_run_the_readme_reports(capsys, in_tmp):
    command = ["data=scan_length", "data.preprocess=scan_structured", "model=transformer", "optimizer.lr=1e-3",
               "optimizer.weight_decay=0.1", "model.max_len=512", "model.positions=alibi", "trainer.max_steps=8000",
               "trainer.early_stopping.monitor=val/loss"]
    assert composed(capsys, "+experiment=scan_length") == composed(capsys, *command)
