"""Optimizers from torch.optim (and muon.py's Muon with AdamW) and the learning-rate schedule
(linear warmup, then a decay)."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Iterable

import torch
from torch import nn
from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

from msr.train.muon import MuonWithAdamW, hidden_matrices, muon_options, muon_rates

OPTIMIZERS = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adadelta": torch.optim.Adadelta,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
    "muon": MuonWithAdamW,
}


def fused(params: list[torch.Tensor]) -> bool:
    """Whether Adam and AdamW may take `fused=True`: torch has one kernel for all the tensors
    (CUDA and, since torch 2.4, CPU), where floating tensors on those devices are all it gets.
    Fused is faster on CPU too, measured on 2 cores, torch 2.13 (an AdamW step over msr
    Transformers' parameters: 0.66 ms against foreach's 1.33 ms for 27k parameters, 2.4 against
    7.0 ms for the default model's 636k, 38 against 241 ms for 10.8M)."""
    devices = _get_fused_kernels_supported_devices()
    return all(p.is_floating_point() and p.device.type in devices for p in params)


def build_optimizer(cfg, model: nn.Module, lr_scale: dict[str, float] | None = None,
                    no_decay: Iterable[str] = ()) -> torch.optim.Optimizer:
    """Weight decay applies to matrices (weights, embeddings), never to biases or norm gains, nor
    to tensors of which only some rows train (decay would move the frozen rows). `lr_scale`
    gives parameters their own multiple of the learning rate (fine-tuning's discriminative rates).
    With optimizer=muon each group is also Muon's or AdamW's (muon.hidden_matrices)."""
    from msr.train.transfer import part_of

    muon = hidden_matrices(model) if cfg.name == "muon" else set()
    groups: dict[tuple[float, bool, bool], list] = {}
    parts: dict[tuple[float, bool, bool], set] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            decays = p.dim() >= 2 and name not in no_decay
            key = ((lr_scale or {}).get(name, 1.0), decays, name in muon)
            groups.setdefault(key, []).append(p)
            parts.setdefault(key, set()).add(part_of(name)[0])
    # grouped by rate, decay and update rule only (a saved optimizer state has these groups);
    # "parts" says which parts of the model each holds, for logged_lr
    param_groups = []
    for (scale, decays, is_muon), params in groups.items():
        lr, weight_decay = muon_rates(cfg, is_muon) if cfg.name == "muon" else (cfg.lr, cfg.weight_decay)
        group = {"params": params, "lr": lr * scale, "parts": sorted(parts[scale, decays, is_muon]),
                 "weight_decay": weight_decay if decays else 0.0}
        param_groups.append({**group, "muon": is_muon} if cfg.name == "muon" else group)
    return OPTIMIZERS[cfg.name](param_groups, **options(cfg, [p for ps in groups.values() for p in ps]))


def options(cfg, params: list[torch.Tensor]) -> dict:
    """The torch optimizer's keyword arguments: cfg's own keys, and fused where torch has it."""
    if cfg.name == "muon":
        return muon_options(cfg, fused(params))
    options = {k: v for k, v in asdict(cfg).items() if k not in ("name", "weight_decay")}
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    if cfg.name in ("adam", "adamw"):
        options["fused"] = fused(params)
    return options


def logged_lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate this step gives the body (its top layer, with layer_decay): what `lr`
    in history.jsonl means. The first group is the embeddings', which finetune may scale apart.
    Under optimizer=muon that is Muon's rate (optimizer.lr), not the AdamW side's."""
    body = [g["lr"] for g in optimizer.param_groups
            if "body" in g.get("parts", ("body",)) and g.get("muon", True)]
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
