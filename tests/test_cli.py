"""The command line: help, unknown commands, and one-line errors for every bad config."""

from __future__ import annotations

import pytest

from conftest import msr_process, run_msr


def test_help_lists_the_commands(capsys):
    assert run_msr("--help") == 0
    out = capsys.readouterr().out
    assert "train" in out and "supervised training" in out


def test_unknown_command_lists_commands_and_exits_2(capsys):
    assert run_msr("trian") == 2
    err = capsys.readouterr().err
    assert "unknown command 'trian'" in err and "train" in err.split("Commands:")[1]


def test_command_help_shows_groups_and_config(capsys):
    assert run_msr("train", "--help") == 0
    out = capsys.readouterr().out
    assert "model: gru, lstm, rnn, transformer" in out
    assert "optimizer: adadelta, adam, adamw, rmsprop, sgd" in out
    assert "scheduler: constant, cosine, exponential, linear, step" in out
    assert "device: auto, cpu, cuda, mps" in out
    assert "+experiment: shakespeare_char_cpu, transformer_arith" in out
    assert "data: arith, chain, files, gsm8k, kinship, listops, logic, scan_jump, scan_length, scan_simple, tinyshakespeare" in out
    assert "max_steps:" in out


def test_data_command_help_lists_only_its_groups(capsys):
    assert run_msr("data", "--help") == 0
    out = capsys.readouterr().out
    assert "  data: arith, chain, files, gsm8k, kinship" in out and "--export" in out
    assert "model:" not in out and "optimizer:" not in out and "experiment" not in out


def test_experiment_presets_compose(capsys, in_tmp):
    assert run_msr("train", "+experiment=transformer_arith", "--cfg", "job") == 0
    out = capsys.readouterr().out
    assert "name: transformer" in out and "max_steps: 20000" in out and "size: 100000" in out


def test_cfg_job_prints_the_composed_config(capsys, in_tmp):
    assert run_msr("train", "model=gru", "optimizer=sgd", "optimizer.nesterov=true", "--cfg", "job") == 0
    out = capsys.readouterr().out
    assert "name: gru" in out and "nesterov: true" in out and "momentum: 0.9" in out
    assert not (in_tmp / "outputs").exists()


@pytest.mark.parametrize(
    "override, expected",
    [
        ("optimizer.lr=abc", "optimizer.lr: Value 'abc' of type 'str' could not be converted to Float"),
        ("model=lstmm", "model=lstmm does not exist; choose one of: gru, lstm, rnn, transformer"),
        ("trainer.max_steps=-3", "trainer.max_steps=-3 is not allowed: must be a positive integer"),
        ("model.hidden_size=0", "model.hidden_size=0 is not allowed: must be a positive integer"),
        ("trainer.max_stepz=10", "trainer.max_stepz: no such key; keys here: max_steps,"),
        ("foo=1", "foo: no such key; keys here: seed, model,"),
        ("trainer.precision=fp8", "trainer.precision: Invalid value 'fp8', expected one of [fp32, bf16, fp16]"),
        ("model=transformer model.n_heads=3", "model.n_heads=3 is not allowed: must divide model.d_model=128"),
        ("optimizer=sgd optimizer.betas=[0.9,0.99]", "optimizer.betas: no such key"),
        ("optimizer.lr=1e-3,3e-3", "optimizer.lr=1e-3,3e-3 is a sweep: add -m"),
        ("data.test.min_steps=5", "data.test.max_steps=4 is not allowed: must be >= data.test.min_steps=5"),
        ("data=logic data.test.max_steps=13", "data.test.max_steps=13 is not allowed: must be <= 12 for logic"),
        ("data=listops data.operators=[MAX,AVG]", "data.operators=['MAX', 'AVG'] is not allowed: a non-empty list"),
    ],
)
def test_config_errors_are_one_line_and_write_nothing(override, expected, capsys, in_tmp):
    assert run_msr("train", *override.split()) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("msr: error: ") and expected in err
    assert not (in_tmp / "outputs").exists()


def test_sweep_values_are_each_validated(capsys, in_tmp):
    assert run_msr("train", "-m", "model.hidden_size=8,0") == 2
    assert "model.hidden_size=0 is not allowed" in capsys.readouterr().err
    assert not (in_tmp / "outputs").exists()


def test_errors_from_a_real_process_have_no_traceback(tmp_path):
    result = msr_process("train", "optimizer.lr=abc", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "msr: error: optimizer.lr: Value 'abc' of type 'str' could not be converted to Float"
    ]


def test_cuda_without_cuda_says_so(capsys, in_tmp):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert run_msr("train", "device=cuda") == 2
    err = capsys.readouterr().err
    assert "device=cuda: CUDA is not available here" in err and "device=cpu" in err
    assert not (in_tmp / "outputs").exists()


def test_free_text_values_need_no_hydra_quoting(capsys, in_tmp):
    assert run_msr("train", "--cfg", "job", "data.template=Q: {input}, it's [A]:") == 0
    assert "template: 'Q: {input}, it''s [A]:'" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["evaluate"], ["generate", "prompt=x"]])
def test_a_missing_required_key_is_one_line(command, capsys):
    assert run_msr(*command) == 2
    assert capsys.readouterr().err == "msr: error: run is required: give it as run=...\n"
