"""Optimizers and learning-rate schedules against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from msr.config import (AdamWConfig, CosineConfig, ExponentialConfig, LinearConfig, RecurrentConfig,
                        SchedulerConfig, SGDConfig, StepConfig)
from msr.models import build_model
from msr.train.optim import build_optimizer, build_scheduler, lr_multiplier


@pytest.mark.parametrize("cfg, step, expected", [
    (SchedulerConfig(warmup_steps=4), 0, 0.25),
    (SchedulerConfig(warmup_steps=4), 3, 1.0),
    (SchedulerConfig(warmup_steps=4), 50, 1.0),
    (CosineConfig(warmup_steps=10, min_lr_ratio=0.1), 10, 1.0),
    (CosineConfig(warmup_steps=10, min_lr_ratio=0.1), 60, 0.55),  # halfway: (1 + 0.1) / 2
    (CosineConfig(warmup_steps=10, min_lr_ratio=0.1), 110, 0.1),
    (CosineConfig(warmup_steps=10, min_lr_ratio=0.1), 500, 0.1),
    (LinearConfig(warmup_steps=0, min_lr_ratio=0.0), 55, 0.5),
    (LinearConfig(warmup_steps=10, min_lr_ratio=0.2), 35, 0.8),  # a quarter of the way: 1 - 0.8 * 0.25
    (StepConfig(step_size=10, gamma=0.5), 9, 1.0),
    (StepConfig(step_size=10, gamma=0.5), 25, 0.25),
    (ExponentialConfig(gamma=0.9), 3, 0.729),
])
def test_lr_multiplier(cfg, step, expected):
    assert lr_multiplier(cfg, step, total_steps=111) == pytest.approx(expected)  # 100 steps after warmup 10


def test_scheduler_drives_the_optimizer_lr():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    sched = build_scheduler(CosineConfig(warmup_steps=2, min_lr_ratio=0.0), opt, total_steps=12)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[1] == pytest.approx(0.2)
    # 10 steps after warmup: step 2 starts the decay, step 11 (the last) ends it at min_lr_ratio * lr
    assert lrs[7] == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 5 / 9)))
    assert lrs[11] == pytest.approx(0.0, abs=1e-12)


def test_weight_decay_skips_biases_and_sgd_options_pass_through():
    model = build_model(RecurrentConfig(name="gru", embedding_size=4, hidden_size=4), vocab_size=9)
    opt = build_optimizer(AdamWConfig(lr=1e-3, weight_decay=0.1), model)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and all(p.dim() >= 2 for p in decayed["params"])
    assert plain["weight_decay"] == 0.0 and all(p.dim() == 1 for p in plain["params"])
    assert isinstance(opt, torch.optim.AdamW)
    sgd = build_optimizer(SGDConfig(lr=0.05, momentum=0.8, nesterov=True), model)
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["nesterov"] is True and sgd.defaults["momentum"] == 0.8 and sgd.defaults["lr"] == 0.05


def test_the_logged_lr_stays_the_bodys_after_loading_an_older_optimizer_state():
    from msr.config import TrainerConfig
    from msr.train.loop import Trainer
    from msr.train.optim import logged_lr

    model = build_model(RecurrentConfig(name="lstm"), 20)
    scales = {name: (10.0 if name.startswith("embed.") else 1.0) for name, _ in model.named_parameters()}
    optimizer = build_optimizer(AdamWConfig(lr=1e-2), model, scales)
    trainer = Trainer(model, optimizer, build_scheduler(CosineConfig(warmup_steps=0), optimizer, 10),
                      TrainerConfig(), torch.device("cpu"))
    state = trainer.state_dict()
    for group in state["optimizer"]["param_groups"]:  # as an msr that did not name the groups saved it
        group.pop("parts")
    trainer.load_state_dict(state)
    assert logged_lr(trainer.optimizer) == pytest.approx(1e-2)


def test_adagrad_gets_its_config_and_takes_the_step_by_hand():
    from msr.config import AdagradConfig

    cfg = AdagradConfig(lr=0.5, lr_decay=0.25, initial_accumulator_value=3.0, eps=1e-6, weight_decay=0.1)
    weight = torch.nn.Parameter(torch.tensor([[1.0, -2.0]]))
    model = torch.nn.Module()
    model.weight = weight
    opt = build_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.Adagrad)
    assert opt.defaults["lr_decay"] == 0.25 and opt.defaults["initial_accumulator_value"] == 3.0
    assert opt.defaults["eps"] == 1e-6 and opt.param_groups[0]["weight_decay"] == 0.1  # a matrix: decayed
    # two steps of loss = sum(w): gradient 1 + weight_decay * w; sum += g^2; w -= lr / (1 + (t-1) lr_decay) g / sqrt(sum)
    w, acc = [1.0, -2.0], [3.0, 3.0]
    for t in (1, 2):
        opt.zero_grad()
        weight.sum().backward()
        opt.step()
        for i in range(2):
            g = 1 + 0.1 * w[i]
            acc[i] += g * g
            w[i] -= 0.5 / (1 + (t - 1) * 0.25) * g / (math.sqrt(acc[i]) + 1e-6)
    assert weight.detach()[0].tolist() == pytest.approx(w)


@pytest.mark.parametrize("key, value, allowed", [
    ("lr", 0.0, "must be > 0"),
    ("lr_decay", -0.1, "must be >= 0"),
    ("initial_accumulator_value", -1.0, "must be >= 0"),
    ("eps", 0.0, "must be > 0"),
    ("weight_decay", -0.01, "must be >= 0"),
])
def test_adagrad_ranges(key, value, allowed):
    from msr.config import AdagradConfig
    from msr.errors import ConfigError

    with pytest.raises(ConfigError, match=f"^optimizer.{key}={value!r} is not allowed: {allowed}$"):
        AdagradConfig(**{key: value}).validate("optimizer.")
