"""The command line: help, unknown commands, and one-line errors for every bad config."""

from __future__ import annotations

import pytest

from conftest import TINY, msr_process, run_msr


def test_help_lists_the_commands(capsys):
    assert run_msr("--help") == 0
    out = capsys.readouterr().out
    assert "train" in out and "supervised training" in out


def test_unknown_command_is_one_line_with_the_closest_command(capsys):
    assert run_msr("trian") == 2
    assert capsys.readouterr().err == ("msr: error: 'trian' is not a msr command. See 'msr --help'.\n"
                                       "The most similar command is train\n")
    assert run_msr("xyzzy") == 2
    assert capsys.readouterr().err == "msr: error: 'xyzzy' is not a msr command. See 'msr --help'.\n"


def test_command_help_shows_groups_and_config(capsys):
    assert run_msr("train", "--help") == 0
    out = capsys.readouterr().out
    assert "model: gru, lstm, rnn, transformer" in out
    assert "optimizer: adadelta, adagrad, adam, adamw, muon, rmsprop, sgd" in out
    assert "scheduler: constant, cosine, exponential, linear, step" in out
    assert "device: auto, cpu, cuda, mps" in out
    assert "+experiment: arith_length, chain_length, kinship_length, scan_length, scan_length_lstm, shakespeare_char, shakespeare_char_cpu, transformer_arith" in out
    assert "data: arith, chain, files, gsm8k, kinship, listops, logic, mixture, scan_jump, scan_length, scan_simple, tinyshakespeare" in out
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
        ("trainer.precision=fp8", "trainer.precision: Invalid value 'fp8', expected one of [auto, fp32, bf16, fp16]"),
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


@pytest.mark.parametrize(
    "override, expected",
    [
        ("+nonsense_key=1", "nonsense_key: no such key; keys here: seed, model,"),
        ("++nonsense_key=1", "nonsense_key: no such key; keys here: seed, model,"),
        ("+trainer.max_stepz=10", "trainer.max_stepz: no such key; keys here: max_steps, batch_size,"),
        ("+model.hiden=3", "model.hiden: no such key; keys here: name, embedding_size, hidden_size,"),
        ("+trainer.early_stopping.extra.deep=1", "trainer.early_stopping.extra: no such key; keys here: monitor,"),
    ],
)
@pytest.mark.parametrize("mode", [[], ["--cfg", "job"]])
def test_added_keys_must_exist_in_the_schema(override, expected, mode, capsys, in_tmp):
    assert run_msr("train", *mode, override) == 2
    err = capsys.readouterr().err
    assert err.startswith("msr: error: ") and err.count("\n") == 1 and expected in err, err
    assert not (in_tmp / "outputs").exists()


def test_every_sweep_job_is_checked_for_added_keys(capsys, in_tmp):
    # d_model is the transformer's own key: the LSTM job of the sweep has no such key
    assert run_msr("train", "-m", "model=transformer,lstm", "++model.d_model=32", *TINY) == 2
    assert "model.d_model: no such key; keys here: name, embedding_size," in capsys.readouterr().err
    assert not (in_tmp / "outputs").exists()


@pytest.mark.parametrize("added", [["+experiment=transformer_arith"], ["+hydra.job.env_set.OMP_NUM_THREADS=1"],
                                   ["++trainer.max_steps=700"]])
def test_presets_hydra_keys_and_forced_known_keys_still_add(added, capsys, in_tmp):
    from msr.cli import CONF_DIR
    from msr.overrides import check_overrides

    check_overrides(CONF_DIR, "train", added, multirun=False)
    assert run_msr("train", *added, "--cfg", "job") == 0
    assert "max_steps:" in capsys.readouterr().out


def test_a_run_folder_under_a_file_is_one_line(in_tmp):
    (in_tmp / "notes.txt").write_text("a file, not a folder\n")
    result = msr_process("train", "hydra.run.dir=notes.txt/run", cwd=in_tmp)
    assert result.returncode == 2
    assert result.stderr == "msr: error: hydra.run.dir=notes.txt/run: notes.txt is a file, not a folder\n"


def test_log_lines_on_an_80_column_terminal_keep_paths_whole(monkeypatch):
    import io
    import logging
    import re
    import sys

    from msr import logs

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setenv("COLUMNS", "80")
    logs.console.cache_clear()  # a console for this fake terminal, then none left over for others
    try:
        handler = logs.console_handler("[%(asctime)s] %(message)s", "%H:%M:%S")
        folder = "/home/someone/experiments/outputs/multirun/train/2026-11-22/20-56-05/12"
        handler.handle(logging.makeLogRecord({"name": "msr", "msg": "run folder: %s", "args": (folder,),
                                              "levelno": logging.INFO, "levelname": "INFO"}))
    finally:
        logs.console.cache_clear()
    shown = re.sub(r"\x1b\[[0-9;]*m", "", terminal.getvalue())
    assert f"run folder: {folder}\n" in shown, shown


def test_a_sweep_cannot_print_its_config(capsys, in_tmp):
    assert run_msr("train", "-m", "model=lstm,gru", "--cfg", "job") == 2
    assert capsys.readouterr().err == "msr: error: -m cannot go with --cfg or --info, which show one job's config; drop -m\n"
