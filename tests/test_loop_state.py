"""The training loop on its own: early stopping, the log/eval/checkpoint cadence, gradient
accumulation, and the loop state that trainer_state.pt holds."""

from __future__ import annotations

import copy
import io

import pytest
import torch

from msr.config import EarlyStoppingConfig, RecurrentConfig, SchedulerConfig, SGDConfig, TrainerConfig
from msr.data.batching import IGNORE, EncodedSplit
from msr.errors import Paused
from msr.models import build_model
from msr.train import loop
from msr.train.loop import EarlyStopping, LoopState, Trainer, fit
from msr.train.optim import build_optimizer, build_scheduler

# trainer_state.pt as runs made before LoopState wrote it: a resume must still read it
SAVED_KEYS = {"optimizer", "scheduler", "step", "metrics", "tokens", "train_seconds", "running_loss",
              "running_steps", "early_stopping", "scaler", "skipped", "rng", "elapsed_seconds",
              "curriculum"}


def split(rows: int, seed: int = 0) -> EncodedSplit:
    """Right-padded rows of different lengths, each with a few target tokens at its end."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 9, (rows,), generator=g)
    inputs = torch.randint(1, 11, (rows, 8), generator=g)
    labels = torch.full((rows, 8), IGNORE)
    for r, n in enumerate(lengths.tolist()):
        inputs[r, n:] = 0
        targets = int(torch.randint(1, n, (1,), generator=g))
        labels[r, n - targets : n] = torch.randint(1, 11, (targets,), generator=g)
    return EncodedSplit(inputs, labels, lengths, torch.full((rows,), -1), 0)


def make_trainer(model, **options) -> Trainer:
    cfg = TrainerConfig(**{"eval_batch_size": 16, **options})
    optimizer = build_optimizer(SGDConfig(lr=0.5, momentum=0.0), model)
    return Trainer(model, optimizer, build_scheduler(SchedulerConfig(), optimizer, cfg.max_steps), cfg,
                   torch.device("cpu"))


def tiny_model():
    torch.manual_seed(0)
    return build_model(RecurrentConfig(name="gru", embedding_size=8, hidden_size=8), vocab_size=11)


class Recorder:
    """fit's log_history and save, noting which steps logged, evaluated and saved what."""

    def __init__(self):
        self.logged, self.evaluated, self.saved, self.states = [], [], [], {}

    def log_history(self, record: dict) -> None:
        (self.logged if "train/loss" in record else self.evaluated).append(record["step"])

    def save(self, name: str, state: dict) -> None:
        self.saved.append((name, state["step"]))
        self.states[name] = state


def run_fit(monkeypatch=None, losses=None, resume=None, model=None, **options):
    """fit on a tiny GRU; with `losses`, the evaluations return those validation losses in turn
    (and early stopping watches them)."""
    if losses is not None:
        scripted = iter(losses)
        monkeypatch.setattr(loop, "evaluate", lambda *a, **k: {"loss": next(scripted), "accuracy": 0.0})
        options.setdefault("early_stopping", monitor_loss())
    trainer = make_trainer(model or tiny_model(), **options)
    recorder = Recorder()
    result = fit(trainer, split(32), split(8, seed=1), trainer.cfg, 0, recorder.log_history, recorder.save,
                 resume=resume)
    return result, recorder, trainer


def monitor_loss(**options) -> EarlyStoppingConfig:
    return EarlyStoppingConfig(monitor="val/loss", **options)


def test_early_stopping_counts_patience_by_min_delta_and_keeps_every_strict_best():
    stopper = EarlyStopping(monitor_loss(patience=2, min_delta=0.1))
    assert stopper.update({"val/loss": 1.0}, 10)  # the first is the best so far
    assert stopper.update({"val/loss": 0.95}, 20)  # better, but by less than min_delta: patience runs on
    assert not stopper.should_stop and stopper.evals_without_improvement == 1
    assert stopper.update({"val/loss": 0.9}, 30)
    assert stopper.should_stop and (stopper.best, stopper.best_step) == (0.9, 30)
    assert stopper.best_metrics == {"val/loss": 0.9}


def test_early_stopping_resets_on_a_large_gain_and_maximizes_accuracy():
    stopper = EarlyStopping(EarlyStoppingConfig(monitor="val/accuracy", patience=2, min_delta=0.05))
    for step, accuracy in [(1, 0.5), (2, 0.4), (3, 0.7), (4, 0.7), (5, 0.72)]:
        stopper.update({"val/accuracy": accuracy}, step)
    assert (stopper.best, stopper.best_step, stopper.evals_without_improvement) == (0.72, 5, 2)
    assert stopper.should_stop
    twin = EarlyStopping(stopper.cfg)
    twin.load_state_dict(stopper.state_dict())
    assert twin.state_dict() == stopper.state_dict()


def test_patience_zero_never_stops():
    stopper = EarlyStopping(monitor_loss(patience=0))
    for step in range(1, 20):
        stopper.update({"val/loss": float(step)}, step)
    assert not stopper.should_stop and stopper.best_step == 1


def test_logs_evaluations_and_checkpoints_follow_their_cadence(monkeypatch):
    result, seen, _ = run_fit(monkeypatch, [3.0, 2.0, 2.5], max_steps=10, log_every=3, eval_every=4)
    assert seen.logged == [3, 6, 9, 10]  # every log_every steps and at the end
    assert seen.evaluated == [4, 8, 10]
    assert seen.saved == [("best", 4), ("last", 4), ("best", 8), ("last", 8), ("last", 10)]
    assert (result["steps"], result["best_step"], result["val"]) == (10, 8, {"val/loss": 2.0, "val/accuracy": 0.0})


def test_checkpoint_every_sets_when_last_is_written(monkeypatch):
    _, seen, _ = run_fit(monkeypatch, [3.0, 2.0, 1.0], max_steps=10, log_every=5, eval_every=4, checkpoint_every=3)
    assert [step for name, step in seen.saved if name == "last"] == [3, 6, 9, 10]
    assert [step for name, step in seen.saved if name == "best"] == [4, 8, 10]


def paused_fit(monkeypatch, **options) -> Recorder:
    """fit with trainer.stop_at, which ends by raising Paused; what it logged and saved."""
    monkeypatch.setattr(loop, "evaluate", lambda *a, **k: {"loss": 1.0, "accuracy": 0.0})
    trainer, recorder = make_trainer(tiny_model(), **options), Recorder()
    with pytest.raises(Paused):
        fit(trainer, split(32), split(8), trainer.cfg, 0, recorder.log_history, recorder.save)
    return recorder


def test_stop_at_pauses_after_that_step_with_a_last_checkpoint(monkeypatch):
    seen = paused_fit(monkeypatch, max_steps=10, log_every=2, eval_every=4, stop_at=5)
    assert seen.saved == [("best", 4), ("last", 4), ("last", 5)]
    assert seen.logged == [2, 4] and seen.evaluated == [4]


def test_early_stopping_ends_the_run_with_a_last_checkpoint(monkeypatch):
    stopping = monitor_loss(patience=2)
    result, seen, _ = run_fit(monkeypatch, [1.0, 1.5, 1.2, 0.1], max_steps=20, log_every=10, eval_every=2,
                              early_stopping=stopping)
    assert seen.evaluated == [2, 4, 6]
    assert seen.saved == [("best", 2), ("last", 2), ("last", 4), ("last", 6)]
    assert result["stopped_early"] and (result["steps"], result["best_step"]) == (6, 2)


@pytest.mark.parametrize("micro_batches", [2, 4])
def test_k_micro_batches_of_b_update_as_one_batch_of_k_times_b(micro_batches):
    """The batch order gives the k micro-batches of a step the same rows as one batch of k*b,
    each trimmed to its own longest row: one optimizer step must land on the same parameters."""
    accumulated, whole = tiny_model(), tiny_model()
    run_fit(model=accumulated, max_steps=1, batch_size=2, grad_accum_steps=micro_batches)
    run_fit(model=whole, max_steps=1, batch_size=2 * micro_batches)
    moved = False
    for p, q, start in zip(accumulated.parameters(), whole.parameters(), tiny_model().parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
        moved |= not torch.equal(p, start)
    assert moved


def saved_and_loaded(state: dict) -> dict:
    """`state` through torch.save and torch.load(weights_only=True), as trainer_state.pt goes."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_the_saved_state_is_the_old_flat_layout_and_loads_without_unpickling(monkeypatch):
    state = paused_fit(monkeypatch, max_steps=10, eval_every=4, stop_at=6).states["last"]
    assert set(state) == SAVED_KEYS and state["step"] == 6
    fresh = LoopState(EarlyStopping(EarlyStoppingConfig()))
    fresh.load_state_dict(saved_and_loaded(state))
    assert (fresh.step, fresh.tokens, fresh.running_steps, fresh.metrics) == \
        (6, state["tokens"], state["running_steps"], {"val/loss": 1.0, "val/accuracy": 0.0})


def test_a_paused_fit_resumed_from_its_saved_state_ends_on_the_same_parameters():
    whole = tiny_model()
    run_fit(model=whole, max_steps=8, log_every=3, eval_every=4)

    first, recorder, weights = tiny_model(), Recorder(), {}
    trainer = make_trainer(first, max_steps=8, log_every=3, eval_every=4, stop_at=5)

    def save(name, state):
        recorder.save(name, state)
        weights[name] = copy.deepcopy(first.state_dict())

    with pytest.raises(Paused):
        fit(trainer, split(32), split(8, seed=1), trainer.cfg, 0, recorder.log_history, save)
    saved = saved_and_loaded(recorder.states["last"])

    resumed = tiny_model()
    resumed.load_state_dict(weights["last"])
    result, _, _ = run_fit(model=resumed, resume=saved, max_steps=8, log_every=3, eval_every=4)
    assert result["steps"] == 8
    for p, q in zip(resumed.parameters(), whole.parameters()):
        assert torch.equal(p, q)
