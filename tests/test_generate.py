"""`msr generate` at a Transformer's length limit, and the text of a language model trained on a
task's inputs: prompts too long, answers cut short, and the <eos> a model writes."""

from __future__ import annotations

import json

import pytest
from conftest import TINY, TINY_MODEL, run_msr

MAX_LEN = 16  # arith with up to 4 operators: 10 input tokens + <sep> + answer + <eos>
LONG = " + ".join(["1"] * 12) + " ="  # 24 tokens: no room under MAX_LEN


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Trained once: a supervised Transformer on arith, and a language model on arith's inputs."""
    root = tmp_path_factory.mktemp("runs")
    small = [*TINY_MODEL["transformer"], f"model.max_len={MAX_LEN}"]
    assert run_msr("train", *TINY, *small, f"hydra.run.dir={root / 'task'}") == 0
    assert run_msr("pretrain", "data=arith", *TINY, *small, f"data.block_size={MAX_LEN}", "data.tokenizer=word",
                   "trainer.max_steps=60", f"hydra.run.dir={root / 'lm'}") == 0
    return root


def records(path) -> list[dict]:
    return [json.loads(line) for line in (path / "generations.jsonl").read_text().splitlines()]


def test_a_supervised_prompt_too_long_is_refused_alone(runs, in_tmp, capsys):
    (in_tmp / "prompts.txt").write_text(f"1 + 2 =\n{LONG}\n3 * 3 =\n")
    assert run_msr("generate", f"run={runs / 'task'}", "prompts_file=prompts.txt", "hydra.run.dir=gen") == 0
    first, long, last = records(in_tmp / "gen")
    assert long["prompt"] == LONG and long["generation"] is None
    assert long["refused"] == (f"reads as 25 tokens (data.template and <sep> included); model.max_len={MAX_LEN} "
                               "leaves no room for an answer, and cropped it would be another question")
    assert first["generation"] is not None and last["generation"] is not None
    # the answer room under max_len, not decode.max_new_tokens=256, is what each prompt had
    assert (first["max_new_tokens"], last["max_new_tokens"]) == (MAX_LEN - 5, MAX_LEN - 5)
    err = capsys.readouterr().err
    assert "1 of 3 prompts refused: longer than model.max_len=16 allows" in err
    assert err.count(f"decode.max_new_tokens=256 is cut by model.max_len={MAX_LEN}") == 1
    # alone, the refusal is the run's one-line error
    assert run_msr("generate", f"run={runs / 'task'}", f"prompt={LONG}", "hydra.run.dir=one") == 2
    assert "leaves no room for an answer" in capsys.readouterr().err


def test_a_language_models_long_prompt_is_cropped_and_its_eos_shown(runs, in_tmp, capsys):
    (in_tmp / "prompts.txt").write_text(f"1 + 2 =\n{LONG}\n")
    assert run_msr("generate", f"run={runs / 'lm'}", "prompts_file=prompts.txt", "decode.max_new_tokens=6",
                   "hydra.run.dir=gen") == 0
    short, long = records(in_tmp / "gen")
    assert "cropped_to" not in short and short["max_new_tokens"] == 6
    assert long["cropped_to"] == MAX_LEN - 6 and long["max_new_tokens"] == 6
    # every input in the stream ends with "=" then <eos>: the model writes it, and the text shows it
    assert short["generation"].startswith("<eos> ")
    assert not any(t in r["generation"] for r in (short, long) for t in ("<pad>", "<unk>", "<sep>"))
    captured = capsys.readouterr()
    assert f"1 of 2 prompts cropped to their last {MAX_LEN - 6} tokens (model.max_len={MAX_LEN})" in captured.err
    assert "1 + 2 = → <eos> " in captured.out
