"""Optimizers from torch.optim and the learning-rate schedule (linear warmup, then a decay)."""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
from torch import nn

OPTIMIZERS = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adadelta": torch.optim.Adadelta,
    "rmsprop": torch.optim.RMSprop,
}


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """Weight decay applies to matrices (weights, embeddings), never to biases or norm gains."""
    options = {k: v for k, v in asdict(cfg).items() if k not in ("name", "weight_decay")}
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return OPTIMIZERS[cfg.name]([g for g in groups if g["params"]], **options)


def lr_multiplier(cfg, step: int, total_steps: int) -> float:
    """The share of optimizer.lr to use at optimizer step `step` (0-based)."""
    warmup = cfg.warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    done = step - warmup
    progress = min(done / max(total_steps - warmup - 1, 1), 1.0)  # the last step is at the end
    if cfg.name == "cosine":
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.name == "linear":
        return 1 - (1 - cfg.min_lr_ratio) * progress
    if cfg.name == "step":
        return cfg.gamma ** (done // cfg.step_size)
    if cfg.name == "exponential":
        return cfg.gamma**done
    return 1.0


def build_scheduler(cfg, optimizer: torch.optim.Optimizer, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(cfg, step, total_steps))
