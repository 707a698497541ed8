"""Config errors blame the key that is out of range, and refuse settings that cannot work together."""

from __future__ import annotations

import pytest

from conftest import TINY, TINY_MODEL, run_msr


# where today's code accepts a setting, the run it starts must stay tiny
SMALL = [*TINY, *TINY_MODEL["lstm"]]


@pytest.mark.parametrize(
    "command, overrides, expected",
    [
        ("train", ["data=chain", "data.test.max_steps=50"],
         "data.test.max_steps=50 is not allowed: must be <= 23 for chain with data.distractors=2"),
        ("train", ["data=chain", "data.distractors=30"], "data.distractors=30 is not allowed: must be <= 24"),
        ("train", ["data.index_hints=true", "data.test.max_steps=30"],
         "data.index_hints=True is not allowed: gives each operator one of 26 letters, but a split asks for 30"),
        ("train", ["data.hint_letters=random"], "data.hint_letters='random' is not allowed: one of sorted, consecutive"),
        ("train", ["data.train.size=0"], "data.train.size=0 is not allowed: must be a positive integer"),
        ("train", ["scheduler.warmup_steps=20"],
         "scheduler.warmup_steps=20 is not allowed: must be < trainer.max_steps=20"),
        ("pretrain", ["data=arith", "data.block_size=16", "scheduler.warmup_steps=100000"],
         "scheduler.warmup_steps=100000 is not allowed: must be < trainer.max_steps=20"),
    ],
)
def test_the_key_out_of_range_is_the_one_blamed(command, overrides, expected, capsys, in_tmp):
    assert run_msr(command, *SMALL, *overrides) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("msr: error: ") and expected in err
