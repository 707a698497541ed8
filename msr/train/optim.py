"""Optimizers from torch.optim and the learning-rate schedule (linear warmup, then a decay)."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Iterable

import torch
from torch import nn

OPTIMIZERS = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adadelta": torch.optim.Adadelta,
    "rmsprop": torch.optim.RMSprop,
}


def build_optimizer(cfg, model: nn.Module, lr_scale: dict[str, float] | None = None,
                    no_decay: Iterable[str] = ()) -> torch.optim.Optimizer:
    """Weight decay applies to matrices (weights, embeddings), never to biases or norm gains, nor
    to tensors of which only some rows train (decay would move the frozen rows). `lr_scale`
    gives parameters their own multiple of the learning rate (fine-tuning's discriminative rates)."""
    options = {k: v for k, v in asdict(cfg).items() if k not in ("name", "weight_decay")}
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    from msr.train.transfer import part_of

    groups: dict[tuple[float, bool], list] = {}
    parts: dict[tuple[float, bool], set] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            decays = p.dim() >= 2 and name not in no_decay
            key = ((lr_scale or {}).get(name, 1.0), decays)
            groups.setdefault(key, []).append(p)
            parts.setdefault(key, set()).add(part_of(name)[0])
    # grouped by rate and decay only (a saved optimizer state has these groups); "parts" says
    # which parts of the model each holds, for logged_lr
    return OPTIMIZERS[cfg.name]([{"params": params, "lr": cfg.lr * scale, "parts": sorted(parts[scale, decays]),
                                  "weight_decay": cfg.weight_decay if decays else 0.0}
                                 for (scale, decays), params in groups.items()], **options)


def logged_lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate this step gives the body (its top layer, with layer_decay): what `lr`
    in history.jsonl means. The first group is the embeddings', which finetune may scale apart."""
    body = [g["lr"] for g in optimizer.param_groups if "body" in g.get("parts", ("body",))]
    return max(body) if body else optimizer.param_groups[0]["lr"]


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
