"""Curricula over reasoning steps: the level at known steps, the rows a level draws from,
mastery's advance, the level a resumed run goes on with, and the errors of a bad curriculum."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from conftest import TINY, TINY_MODEL, run_msr
from msr.config.curriculum import CurriculumConfig, LinearCurriculumConfig, MasteryCurriculumConfig
from msr.errors import UserError
from msr.train.curriculum import Curriculum

STEPS = torch.tensor([1, 2, 3, 4] * 25)  # 100 training rows, 25 at each step count
TRAINER = SimpleNamespace(batch_size=8, grad_accum_steps=1, max_steps=100)


def test_linear_levels_grow_by_equal_shares_until_the_fraction_of_training():
    curriculum = Curriculum(LinearCurriculumConfig(start=1, fraction=0.5), STEPS, STEPS, TRAINER, seed=0)
    levels = {}
    for k in range(100):
        rows = curriculum(k)
        levels[k] = curriculum.level
        assert int(STEPS[rows].max()) <= curriculum.level  # a batch holds only rows of its level
    # level = 1 + int(3 * step / 50): 3 levels to climb over 50 of 100 steps
    assert {k for k, level in levels.items() if level == 1} == set(range(0, 17))
    assert {k for k, level in levels.items() if level == 2} == set(range(17, 34))
    assert {k for k, level in levels.items() if level == 3} == set(range(34, 50))
    assert {k for k, level in levels.items() if level == 4} == set(range(50, 100))
    assert curriculum.logged() == {"curriculum/max_steps": 4}


def test_accumulated_micro_batches_share_their_optimizer_steps_level():
    trainer = SimpleNamespace(batch_size=8, grad_accum_steps=4, max_steps=100)
    curriculum = Curriculum(LinearCurriculumConfig(start=1, fraction=0.5), STEPS, STEPS, trainer, seed=0)
    curriculum(4 * 16 + 3)
    assert curriculum.level == 1  # the last micro-batch of step 16
    curriculum(4 * 17)
    assert curriculum.level == 2


def test_without_a_curriculum_the_order_is_the_plain_one_over_every_row():
    from msr.data.batching import BatchOrder

    curriculum = Curriculum(CurriculumConfig(), STEPS, STEPS, TRAINER, seed=3)
    plain = BatchOrder(len(STEPS), TRAINER.batch_size, 3)
    assert all(torch.equal(curriculum(k), plain(k)) for k in range(30))
    assert curriculum.logged() == {} and curriculum.state_dict() == {}


def test_mastery_advances_one_level_when_the_current_level_reaches_the_threshold():
    curriculum = Curriculum(MasteryCurriculumConfig(start=2, threshold=0.9), STEPS, STEPS, TRAINER, seed=0)
    assert curriculum.level == 2
    curriculum.evaluated({"by_steps": {"1": 1.0, "2": 0.85, "3": 1.0}}, step=10)
    assert curriculum.level == 2  # level 3's accuracy does not count
    curriculum.evaluated({"by_steps": {"2": 0.9}}, step=20)
    assert curriculum.level == 3
    curriculum.evaluated({"by_steps": {"3": 0.95, "4": 0.0}}, step=30)
    curriculum.evaluated({"by_steps": {"4": 1.0}}, step=40)
    assert curriculum.level == 4  # the top level: everything
    assert int(STEPS[curriculum(41)].max()) <= 4
    restored = Curriculum(MasteryCurriculumConfig(start=2), STEPS, STEPS, TRAINER, seed=0)
    restored.load_state_dict(curriculum.state_dict())
    assert restored.level == 4


@pytest.mark.parametrize("cfg, val, message", [
    (LinearCurriculumConfig(start=5), STEPS, "curriculum.start=5 is above the training split's most steps (4)"),
    (MasteryCurriculumConfig(start=1), torch.tensor([1, 3, 4]), "validation split has no example with 2 steps"),
])
def test_a_curriculum_the_data_cannot_follow_is_refused(cfg, val, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Curriculum(cfg, STEPS, val, TRAINER, seed=0)


def test_rows_without_steps_cannot_follow_a_curriculum():
    with pytest.raises(UserError, match="have none; use curriculum=none"):
        Curriculum(LinearCurriculumConfig(), torch.tensor([-1, -1, 2]), STEPS, TRAINER, seed=0)


LINEAR = [*TINY, *TINY_MODEL["gru"], "data=arith", "data.train.min_steps=1", "data.train.max_steps=3",
          "curriculum=linear", "curriculum.fraction=0.5", "trainer.log_every=2", "trainer.max_steps=20",
          "scheduler.warmup_steps=0"]


def logged_levels(run) -> dict[int, int]:
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    return {row["step"]: row["curriculum/max_steps"] for row in rows if "curriculum/max_steps" in row}


def test_a_linear_run_logs_its_level_and_a_resumed_run_goes_on_with_the_same(in_tmp):
    assert run_msr("train", *LINEAR, "hydra.run.dir=whole") == 0
    # level = 1 + int(2 * step / 10) for the batch of step `step` (counted from 0); logged after it
    assert logged_levels(in_tmp / "whole") == {2: 1, 4: 1, 6: 2, 8: 2, 10: 2, 12: 3, 14: 3, 16: 3, 18: 3, 20: 3}
    assert run_msr("train", *LINEAR, "trainer.stop_at=7", "hydra.run.dir=cut") == 0
    assert run_msr("train", "resume=cut") == 0
    assert logged_levels(in_tmp / "cut") == logged_levels(in_tmp / "whole")
    whole, cut = (json.loads((in_tmp / f"{name}/metrics.json").read_text()) for name in ("whole", "cut"))
    assert cut["metrics"] == whole["metrics"]


@pytest.mark.parametrize("overrides, message", [
    (["data=arith", "data.train.max_steps=3", "curriculum=linear", "curriculum.start=4"],
     "curriculum.start=4 is not allowed: must be <= data.train.max_steps=3"),
    (["curriculum=mastery", "curriculum.threshold=1.5"], "curriculum.threshold"),
    (["curriculum=linear", "curriculum.fraction=0"], "curriculum.fraction"),
])
def test_bad_curricula_are_one_line_errors_before_any_work(overrides, message, in_tmp, capsys):
    assert run_msr("train", *TINY, *overrides) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (in_tmp / "outputs").exists()
