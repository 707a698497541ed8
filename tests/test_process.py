"""msr as a real process: a closed output pipe, a run's damaged files as one-line errors, and
what reaches the terminal and msr.log."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import TINY, TINY_MODEL, msr_process, read_metrics, run_msr


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "arith"
    assert run_msr("train", *TINY, *TINY_MODEL["lstm"], f"hydra.run.dir={folder}") == 0
    return folder


def piped(args: list[str], cwd, read_lines: int) -> tuple[int, str]:
    """Run msr with stdout into a pipe that is closed after `read_lines` lines, like `| head -1`
    (0 lines: closed at once, like `| true`); returns the exit code and stderr."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # block-buffered, as in a shell
    with open(cwd / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "msr.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                                stderr=err, env=env)
        for _ in range(read_lines):
            proc.stdout.readline()
        proc.stdout.close()
        code = proc.wait(timeout=300)
    return code, (cwd / "stderr.txt").read_text()


@pytest.mark.slow
def test_data_into_a_pipe_closed_early_still_completes_the_run(tmp_path):
    # ~2,000 example lines are far more than a pipe holds, so msr is still writing when the reader goes
    code, err = piped(["data", "data.train.size=2000", "data.val.size=20", "data.test.size=20", "examples=2000",
                       "hydra.run.dir=d"], tmp_path, read_lines=1)
    assert (code, err.count("Error"), err.count("Traceback")) == (0, 0, 0), err
    assert read_metrics(tmp_path / "d")["status"] == "completed"


@pytest.mark.slow
def test_evaluate_into_a_closed_pipe_still_records_the_run(run, tmp_path):
    code, err = piped(["evaluate", f"run={run}", "hydra.run.dir=ev"], tmp_path, read_lines=0)
    assert (code, err.count("Error"), err.count("Traceback")) == (0, 0, 0), err
    assert read_metrics(tmp_path / "ev")["status"] == "completed"
    assert len((tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()) == 40


def test_a_tokenizer_file_that_is_not_one_is_one_line_also_in_msr_log(run, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "checkpoints" / "best" / "tokenizer.json").write_text("not a tokenizer\n")
    result = msr_process("evaluate", f"run={broken}", "hydra.run.dir=ev", cwd=tmp_path)
    expected = (f"msr: error: {broken}/checkpoints/best/tokenizer.json is not a tokenizer file "
                f"(expected ident at line 1 column 2)")
    assert (result.returncode, result.stderr) == (2, expected + "\n")
    assert read_metrics(tmp_path / "ev")["status"] == "failed"
    assert (tmp_path / "ev" / "msr.log").read_text().splitlines()[-1].endswith(expected)


@pytest.mark.slow
def test_matplotlib_building_its_font_cache_says_nothing(run, tmp_path):
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl")}  # a fresh font cache to build
    result = subprocess.run([sys.executable, "-m", "msr.cli", "evaluate", f"run={run}", "hydra.run.dir=ev"],
                            cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0 and (tmp_path / "ev" / "accuracy_by_steps.png").is_file()
    assert list((tmp_path / "mpl").glob("fontlist-*.json"))  # the cache was built in this run
    assert "fontManager" not in result.stderr + (tmp_path / "ev" / "msr.log").read_text()


@pytest.mark.parametrize("content, expected", [
    (None, " does not exist; a run's checkpoint folder holds its tokenizer.json"),
    ("[1, 2]", " is not a tokenizer file (invalid type: sequence, expected struct Tokenizer at line 1 column 1)"),
    ('{"version": "1.0", "model": {"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"}}',
     ": tokenizer lacks one of the special tokens ('<pad>', '<unk>', '<sep>', '<eos>')"),
])
def test_loading_a_tokenizer_file_that_is_not_msrs_is_a_user_error(content, expected, tmp_path):
    from msr.data.tokenizer import TextTokenizer
    from msr.errors import UserError

    path = tmp_path / "tokenizer.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError) as err:
        TextTokenizer.load(path)
    assert str(err.value) == f"{path}{expected}"
