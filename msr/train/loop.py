"""The training loop: optimizer steps, periodic evaluation, early stopping and checkpoints."""

from __future__ import annotations

import logging
import math
import random
import signal
import time
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from msr.data.batching import IGNORE, BatchOrder, EncodedSplit
from msr.device import check_precision
from msr.errors import Paused, Terminated, TrainingFailed
from msr.eval.metrics import evaluate
from msr.train.optim import logged_lr
from msr.train.progress import Progress

log = logging.getLogger("msr")


class Trainer:
    """One optimizer step: accumulate gradients over micro-batches, add the L1/L2 penalty,
    clip, update, advance the schedule."""

    def __init__(self, model: nn.Module, optimizer, scheduler, cfg, device: torch.device):
        self.model, self.optimizer, self.scheduler, self.cfg = model, optimizer, scheduler, cfg
        self.forward = torch.compile(model) if cfg.compile else model
        dtype = check_precision(cfg.precision, device)
        self.autocast = partial(torch.autocast, device.type, dtype=dtype, enabled=dtype != torch.float32)
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        self.penalized = [p for p in model.parameters() if p.dim() >= 2] if cfg.l1 or cfg.l2 else []
        self.skipped = 0  # steps skipped for a non-finite loss (trainer.skip_nonfinite)

    def loss(self, inputs: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy over target tokens (labels elsewhere are IGNORE)."""
        with self.autocast():
            logits, _ = self.forward(inputs)
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE,
                               reduction=reduction)

    def penalty(self) -> torch.Tensor:
        l1 = sum(p.abs().sum() for p in self.penalized)
        l2 = sum(p.pow(2).sum() for p in self.penalized)
        return self.cfg.l1 * l1 + self.cfg.l2 * l2

    def step(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Returns the step's loss (without penalty) as a tensor: no device sync here.

        Over several micro-batches the loss is the mean over all their target tokens, so
        accumulating gradients gives the same update as one large batch."""
        if len(batches) == 1:
            loss = self.loss(*batches[0])
            self.scaler.scale(loss).backward()
            total = loss.detach()
        else:
            target_tokens = sum((labels != IGNORE).sum() for _, labels in batches)
            total = 0.0
            for inputs, labels in batches:
                loss = self.loss(inputs, labels, reduction="sum") / target_tokens
                self.scaler.scale(loss).backward()
                total = total + loss.detach()
        if self.cfg.skip_nonfinite and not bool(torch.isfinite(total)):  # a sync per step, only when asked
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()  # the schedule stays a function of the step number
            self.skipped += 1
            return torch.zeros_like(total)
        if self.penalized:
            self.scaler.scale(self.penalty()).backward()
        if self.cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return total


class EarlyStopping:
    """Tracks the best evaluation (any strict improvement) and the patience count (improvements
    smaller than min_delta do not reset it)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.maximize = cfg.monitor.endswith("accuracy")
        self.best: float | None = None
        self.best_step = 0
        self.best_metrics: dict = {}
        self.evals_without_improvement = 0

    def update(self, metrics: dict, step: int) -> bool:
        """Record an evaluation; True when it is the best so far."""
        value = metrics[self.cfg.monitor]
        gain = math.inf if self.best is None else (value - self.best if self.maximize else self.best - value)
        self.evals_without_improvement = 0 if gain > self.cfg.min_delta else self.evals_without_improvement + 1
        if gain > 0:
            self.best, self.best_step, self.best_metrics = value, step, dict(metrics)
            return True
        return False

    @property
    def should_stop(self) -> bool:
        return self.cfg.patience > 0 and self.evals_without_improvement >= self.cfg.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_step": self.best_step, "best_metrics": self.best_metrics,
                "evals_without_improvement": self.evals_without_improvement}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_step = state["best"], state["best_step"]
        self.best_metrics, self.evals_without_improvement = state["best_metrics"], state["evals_without_improvement"]


class GracefulStop:
    """Ctrl-C or SIGTERM during training asks the loop to stop after the current step, so that
    it can write a checkpoint to resume from; a second signal stops at once."""

    def __init__(self):
        self.signal: int | None = None

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            raise stop_exception(signum)
        self.signal = signum
        log.warning("stopping after this step (%s); signal again to stop at once", signal.Signals(signum).name)

    def __enter__(self) -> "GracefulStop":
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def stop_exception(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def rng_state() -> dict:
    """Every random stream training draws from (dropout; the data order has its own)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fit(trainer: Trainer, train: EncodedSplit, val: EncodedSplit, cfg, seed: int,
        log_history: Callable[[dict], None], save: Callable[[str, dict], None],
        interactive: bool = False, resume: dict | None = None, language_model: bool = False) -> dict:
    """Train for cfg.max_steps optimizer steps (or until early stopping); returns a summary
    whose validation metrics are those of the best evaluation (the `best` checkpoint).

    `resume` is the state a `last` checkpoint saved: training goes on from its step with the
    same early-stopping record, random streams and data order, as if never interrupted.
    A `language_model` is validated by next-token accuracy: a whole block is never exactly right."""
    score = "token_accuracy" if language_model else "accuracy"
    order = BatchOrder(len(train), cfg.batch_size, seed)
    stopper = EarlyStopping(cfg.early_stopping)
    sync = torch.cuda.synchronize if train.inputs.is_cuda else (lambda: None)
    step, tokens, train_seconds, running_loss, running_steps, metrics = 0, 0, 0.0, 0.0, 0, {}
    if resume is not None:
        step, tokens, train_seconds = resume["step"], resume["tokens"], resume["train_seconds"]
        running_loss, running_steps, metrics = resume["running_loss"], resume["running_steps"], resume["metrics"]
        stopper.load_state_dict(resume["early_stopping"])
        trainer.scaler.load_state_dict(resume["scaler"])
        trainer.skipped = resume["skipped"]
        set_rng_state(resume["rng"])
        log.info("resuming at step %d of %d", step, cfg.max_steps)

    def checkpoint(name: str) -> None:
        save(name, {"step": step, "metrics": metrics, "tokens": tokens, "train_seconds": train_seconds,
                    "running_loss": float(running_loss), "running_steps": running_steps,
                    "early_stopping": stopper.state_dict(), "scaler": trainer.scaler.state_dict(),
                    "skipped": trainer.skipped, "rng": rng_state()})

    stopped_early = False
    trainer.model.train()
    t0 = time.perf_counter()
    with Progress(cfg.max_steps, interactive, start=step) as progress, GracefulStop() as stop:
        while step < cfg.max_steps and not stopped_early:
            lr = logged_lr(trainer.optimizer)  # the lr this step gives the body
            batches = []
            for micro in range(cfg.grad_accum_steps):
                index = order(step * cfg.grad_accum_steps + micro)
                tokens += int(train.lengths[index].sum())
                batches.append(train.batch(index))
            running_loss = running_loss + trainer.step(batches)
            running_steps += 1
            step += 1

            if step % cfg.log_every == 0 or step == cfg.max_steps:
                loss = float(running_loss) / running_steps  # the one device sync per log interval
                running_loss, running_steps = 0.0, 0
                if not math.isfinite(loss):
                    raise TrainingFailed(f"the training loss is {loss} at step {step}")
                train_seconds += time.perf_counter() - t0
                speed = tokens / max(train_seconds, 1e-9)
                log_history({"step": step, "train/loss": loss, "lr": lr, "tokens_per_second": speed})
                progress.update(step, loss, lr, speed)
                t0 = time.perf_counter()

            evaluated = step % cfg.eval_every == 0 or step == cfg.max_steps
            if evaluated:
                sync()
                train_seconds += time.perf_counter() - t0
                result = evaluate(trainer.model, val, cfg.eval_batch_size, trainer.autocast)
                metrics = {"val/loss": result["loss"], f"val/{score}": result[score]}
                improved = stopper.update(metrics, step)
                log_history({"step": step, **metrics})
                log.info("step %d: val loss %.4f, val %s %.4f%s", step, result["loss"], score.replace("_", " "),
                         result[score], " (best so far)" if improved else "")
                if improved:
                    checkpoint("best")
                if stopper.should_stop and step < cfg.max_steps:
                    stopped_early = True
                    log.info("early stopping: %s has not improved by more than %g for %d evaluations "
                             "(best %.4f at step %d)", cfg.early_stopping.monitor, cfg.early_stopping.min_delta,
                             cfg.early_stopping.patience, stopper.best, stopper.best_step)
                t0 = time.perf_counter()
            due = evaluated if not cfg.checkpoint_every else step % cfg.checkpoint_every == 0
            paused = step == cfg.stop_at
            if due or stop.signal or paused or step == cfg.max_steps or stopped_early:  # the end is always kept
                checkpoint("last")
            if stop.signal or paused:
                log.info("stopped at step %d; checkpoints/last holds it", step)
                raise stop_exception(stop.signal) if stop.signal else Paused(step)
    if trainer.skipped:
        log.warning("%d steps were skipped for a non-finite loss", trainer.skipped)
    return {
        "steps": step,
        "best_step": stopper.best_step,
        "stopped_early": stopped_early,
        "skipped_steps": trainer.skipped,
        "tokens": tokens,
        "train_seconds": train_seconds,
        "tokens_per_second": tokens / max(train_seconds, 1e-9),
        "val": stopper.best_metrics,
    }
