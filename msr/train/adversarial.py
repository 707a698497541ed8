"""Adversarial training (trainer.adversarial): the loss of perturbed input embeddings beside the
clean one, discrete adversarial rewrites of training examples searched against the model as it
trains, and robust test accuracy.

- fgm (Miyato et al., 2017): the embeddings move by epsilon along the clean loss's gradient,
  normalised per sequence: r = epsilon * g / ||g||, the L2 norm over the whole sequence
  [T, D], so each sequence's perturbation has norm epsilon.
- pgd (Madry et al., 2018): `steps` such moves of 2.5 * epsilon / steps each (their step size),
  each projected back onto the ball ||r|| <= epsilon. It starts from r = 0, so pgd with one step
  is fgm.
The training loss is (1 - weight) * clean + weight * adversarial, one backward pass for both.
The perturbation is added by a forward hook on the model's `embed` layer (every msr model has
one), so the models need no second entry point; evaluation never sees it.

refresh_every: every N steps, refresh_size training rows drawn afresh are searched with msr
augment's adversarial search (label-preserving rewrites, msr/augment/teacher.py) against the
model as it is; each row the model gets right and some rewrite flips is replaced by that rewrite
in the training tensors until the next refresh, which first puts the previous rows back. The
search counts as training time (tokens_per_second pays for it); history.jsonl logs each refresh.
A resumed run starts from the original rows: the rewrites are not part of the checkpoint.

robust_test: after training, the same search (same tries and edits) runs on the test split
against the trained model itself: test/robust_accuracy is the share of test examples the model
answers right and no rewrite tried makes it answer wrong.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from msr import distributed
from msr.augment.operations import Context, label_preserving
from msr.augment.teacher import Teacher, adversarial_search
from msr.config.trainer import AdversarialMethod
from msr.data import load_data, present
from msr.data.batching import IGNORE, EncodedSplit, encode
from msr.errors import UserError

log = logging.getLogger("msr")

PGD_STEP = 2.5  # Madry et al.'s step size, in units of epsilon / steps


@contextmanager
def embeddings_plus(layer: nn.Module, delta: Callable[[torch.Tensor], torch.Tensor]):
    """Within the block, `layer`'s output [B, T, D] has delta(output) added to it."""
    handle = layer.register_forward_hook(lambda module, args, output: output + delta(output))
    try:
        yield
    finally:
        handle.remove()


def per_sequence_norm(x: torch.Tensor) -> torch.Tensor:
    """The L2 norm of each sequence's [T, D] slice, shaped [B, 1, 1] to divide by."""
    return x.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1)


def project(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Each sequence's perturbation scaled back onto the ball of radius epsilon if it left it."""
    return delta * (epsilon / per_sequence_norm(delta)).clamp(max=1.0)


class AdversarialLoss:
    """Stands in for Trainer.loss: the same call, returning the clean and adversarial mix."""

    def __init__(self, loss: Callable[..., torch.Tensor], model: nn.Module, cfg):
        if distributed.world_size() > 1:
            method = AdversarialMethod(cfg.method).value
            raise UserError(f"trainer.adversarial.method={method} runs in one process only: DDP's gradient hooks "
                            f"expect one forward pass per backward")
        self.clean, self.embed, self.cfg = loss, model.embed, cfg

    def loss_with(self, delta: Callable[[torch.Tensor], torch.Tensor], *args, **kwargs) -> torch.Tensor:
        with embeddings_plus(self.embed, delta):
            return self.clean(*args, **kwargs)

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        start = []  # a zero perturbation that autograd can differentiate by, even with frozen embeddings

        def zero(output):
            start.append(torch.zeros_like(output, requires_grad=True))
            return start[-1]

        clean = self.loss_with(zero, *args, **kwargs)
        (gradient,) = torch.autograd.grad(clean, start[0], retain_graph=True)  # clean's graph: backward later
        delta = self.perturbation(gradient, *args, **kwargs)
        adversarial = self.loss_with(lambda output: delta, *args, **kwargs)
        return (1 - self.cfg.weight) * clean + self.cfg.weight * adversarial

    def perturbation(self, gradient: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """fgm's or pgd's perturbation from the clean loss's gradient by the embeddings; a
        constant (no gradient flows through it into the weights)."""
        epsilon = self.cfg.epsilon
        if self.cfg.method == AdversarialMethod.fgm:
            return epsilon * gradient / per_sequence_norm(gradient)
        size = PGD_STEP * epsilon / self.cfg.steps
        delta = torch.zeros_like(gradient)
        for step in range(self.cfg.steps):
            if step:  # the first step's gradient is the clean pass's
                point = delta.clone().requires_grad_()
                (gradient,) = torch.autograd.grad(self.loss_with(lambda output: point, *args, **kwargs), point)
            delta = project(delta + size * gradient / per_sequence_norm(gradient), epsilon)
        return delta


def search_setup(cfg, model: nn.Module, tokenizer, device) -> tuple[dict, Teacher, Context, list[str]]:
    """The task's raw splits (as msr augment rewrites them: no template, no scratchpad), the model
    as teacher, and what the search needs of the task."""
    raw = load_data(cfg.data, cfg.paths).raw
    ctx = Context(cfg.data.name, cfg.data, sorted({w for r in raw["train"] for w in r["input"].split()}))
    return raw, Teacher(model, tokenizer, cfg.data.template, device), ctx, label_preserving(cfg.data.name)


class Refresher:
    """trainer.adversarial.refresh_every: called after each optimizer step; True when it changed rows."""

    def __init__(self, cfg, model: nn.Module, tokenizer, train: EncodedSplit, device):
        self.options, self.data_cfg, self.seed, self.tokenizer, self.train = \
            cfg.trainer.adversarial, cfg.data, cfg.seed, tokenizer, train
        raw, self.teacher, self.ctx, self.ops = search_setup(cfg, model, tokenizer, device)
        self.raw = raw["train"]
        if len(self.raw) != len(train):  # the rows are replaced by index: both must be the same list
            raise RuntimeError(f"the raw training split has {len(self.raw)} rows, the encoded one {len(train)}")
        self.replaced: list[int] = []  # rows that hold a rewrite now
        self.totals = {"refreshes": 0, "searched": 0, "rewritten": 0, "seconds": 0.0}

    def __call__(self, step: int, log_history: Callable[[dict], None]) -> bool:
        if step % self.options.refresh_every:
            return False
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        rows = torch.randperm(len(self.raw), generator=generator)[: self.options.refresh_size].tolist()
        found, counts = adversarial_search(self.teacher, [self.raw[i] for i in rows], self.ops, self.ctx,
                                           self.options.tries, self.options.edits, f"{self.seed}-{step}")
        rewrites = {rows[i]: flips[0][0] for i, flips in found.items()}  # the first rewrite found of each
        restored = {i: self.raw[i] for i in self.replaced if i not in rewrites}
        self.write({**restored, **rewrites})
        self.replaced = sorted(rewrites)
        seconds = time.perf_counter() - started
        for key, value in (("refreshes", 1), ("searched", len(rows)), ("rewritten", len(rewrites)),
                           ("seconds", seconds)):
            self.totals[key] += value
        log_history({"step": step, "adversarial/searched": len(rows), "adversarial/right": counts["teacher_right"],
                     "adversarial/rewritten": len(rewrites), "adversarial/refresh_seconds": round(seconds, 3)})
        log.info("step %d: %d of %d training rows searched now hold an adversarial rewrite (%.2fs)", step,
                 len(rewrites), len(rows), seconds)
        return bool(rewrites or restored)

    def write(self, records: dict[int, dict]) -> None:
        """Put `records` (raw, by row) into the training tensors, as the model sees them."""
        if not records:
            return
        new = encode(present(list(records.values()), self.data_cfg), self.tokenizer)
        train, width = self.train, new.inputs.shape[1]
        extra = width - train.inputs.shape[1]
        if extra > 0:  # a rewrite longer than any row so far (an added distractor): every row widens
            train.inputs = F.pad(train.inputs, (0, extra), value=self.tokenizer.pad_id)
            train.labels = F.pad(train.labels, (0, extra), value=IGNORE)
        fill = train.inputs.shape[1] - width
        index = torch.tensor(list(records))
        train.inputs[index.to(train.inputs.device)] = F.pad(new.inputs, (0, fill), value=self.tokenizer.pad_id).to(
            train.inputs.device)
        train.labels[index.to(train.labels.device)] = F.pad(new.labels, (0, fill), value=IGNORE).to(train.labels.device)
        train.lengths[index] = new.lengths


def refresher(cfg, model: nn.Module, tokenizer, train: EncodedSplit, device) -> Refresher | None:
    return Refresher(cfg, model, tokenizer, train, device) if cfg.trainer.adversarial.refresh_every else None


def adversarial_summary(model: nn.Module, refresh: Refresher | None, tokenizer, cfg, device) -> tuple[dict, dict]:
    """After training: ({test/robust_accuracy} with robust_test, else {}) and metrics.json's
    `adversarial` block (what the refreshes and the robust test found and cost), or {}."""
    options, report, metrics = cfg.trainer.adversarial, {}, {}
    if refresh is not None:
        report["refresh"] = {**refresh.totals, "seconds": round(refresh.totals["seconds"], 3)}
    if options.robust_test:
        started = time.perf_counter()
        raw, teacher, ctx, ops = search_setup(cfg, model, tokenizer, device)
        _, counts = adversarial_search(teacher, raw["test"], ops, ctx, options.tries, options.edits, f"test-{cfg.seed}")
        metrics["test/robust_accuracy"] = (counts["teacher_right"] - counts["flipped"]) / max(counts["examples"], 1)
        report["robust_test"] = {**counts, "tries": options.tries, "edits": options.edits,
                                 "seconds": round(time.perf_counter() - started, 3)}
        log.info("test robust accuracy %.4f: %d of %d test examples answered right, %d of them flipped by a rewrite",
                 metrics["test/robust_accuracy"], counts["teacher_right"], counts["examples"], counts["flipped"])
    return metrics, ({"adversarial": report} if report else {})
