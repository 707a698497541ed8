"""The training loop: optimizer steps, periodic evaluation, early stopping and checkpoints.

Everything the loop changes as it goes is one `LoopState`; with the `Trainer`'s own state
(optimizer, schedule, gradient scaler, skipped steps) it is what trainer_state.pt holds, as
plain tensors and dicts, so a resumed loop goes on exactly where the saved one stood.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from msr import distributed
from msr.data.batching import IGNORE, EncodedSplit
from msr.device import check_precision
from msr.errors import Paused, TrainingFailed
from msr.eval.metrics import evaluate
from msr.train.adversarial import AdversarialLoss
from msr.train.curriculum import Curriculum
from msr.train.optim import logged_lr
from msr.train.progress import Progress
from msr.train.streams import rng_state, set_rng_state, worker_rng, worker_streams
from msr.train.stopping import GracefulStop, stop_exception

log = logging.getLogger("msr")


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, inputs: torch.Tensor,
                  reduction: str = "mean") -> torch.Tensor:
    """The supervised loss: target tokens only (labels elsewhere are IGNORE)."""
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction=reduction)


class Trainer:
    """One optimizer step: accumulate gradients over micro-batches, add the L1/L2 penalty,
    clip, update, advance the schedule."""

    def __init__(self, model: nn.Module, optimizer, scheduler, cfg, device: torch.device,
                 criterion: Callable[..., torch.Tensor] | None = None):
        self.model, self.optimizer, self.scheduler, self.cfg = model, optimizer, scheduler, cfg
        # DDP all-reduces the gradients in the backward pass (its hooks need its own forward)
        self.forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
            if distributed.world_size() > 1 else model
        self.forward = torch.compile(self.forward) if cfg.compile else self.forward
        dtype = check_precision(cfg.precision, device, model)
        log.debug("trainer.precision=%s: %s on %s", getattr(cfg.precision, "value", cfg.precision), dtype, device)
        self.autocast = partial(torch.autocast, device.type, dtype=dtype, enabled=dtype != torch.float32)
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        self.penalized = [p for p in model.parameters() if p.dim() >= 2] if cfg.l1 or cfg.l2 else []
        self.skipped = 0  # steps skipped for a non-finite loss (trainer.skip_nonfinite)
        # The global gradient norm before clipping, as a tensor (no sync): clipping measures it at
        # every step; without clipping only the steps the loop logs set measure_grad_norm
        self.measure_grad_norm = False
        self.grad_norm: torch.Tensor | None = None
        # (logits, labels, inputs, reduction) -> loss; distill.teacher mixes in soft targets (msr/train/distill.py)
        self.criterion = criterion or cross_entropy
        if cfg.adversarial.method != "none":  # perturbed embeddings' loss mixed in (msr/train/adversarial.py)
            self.loss = AdversarialLoss(self.loss, model, cfg.adversarial)
        self.refresh = None  # trainer.adversarial.refresh_every's Refresher, set by the recipe

    def loss(self, inputs: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The criterion (cross-entropy unless distilling) over target tokens (labels elsewhere are IGNORE)."""
        with self.autocast():
            logits, _ = self.forward(inputs)
        return self.criterion(logits.float(), labels, inputs, reduction)

    def penalty(self) -> torch.Tensor:
        l1 = sum(p.abs().sum() for p in self.penalized)
        l2 = sum(p.pow(2).sum() for p in self.penalized)
        return self.cfg.l1 * l1 + self.cfg.l2 * l2

    def step(self, batches: list[tuple[torch.Tensor, torch.Tensor]], target_tokens: int | None = None) -> torch.Tensor:
        """Returns the step's loss (without penalty) as a tensor: no device sync here.

        Over several micro-batches the loss is the mean over all their target tokens
        (`target_tokens`), so accumulating gradients gives the same update as one large batch. In
        a data-parallel run the batches are this worker's share of the step's rows and
        `target_tokens` counts the whole step's: the worker's loss is its part of the global mean
        (the parts sum to it), and its gradient is scaled by the number of workers because DDP
        averages gradients over them."""
        workers = distributed.world_size()
        if target_tokens is None:
            target_tokens = sum((labels != IGNORE).sum() for _, labels in batches)
        total = 0.0
        for i, (inputs, labels) in enumerate(batches):
            whole = len(batches) == 1 and workers == 1
            loss = self.loss(inputs, labels) if whole else self.loss(inputs, labels, reduction="sum") / target_tokens
            total = total + loss.detach()
            last = i == len(batches) - 1
            if last and self.penalized:  # one backward pass: DDP reduces gradients once per step
                loss = loss * workers + self.penalty()
            elif workers > 1:
                loss = loss * workers
            with self.forward.no_sync() if workers > 1 and not last else nullcontext():
                self.scaler.scale(loss).backward()
        self.grad_norm = None
        if self.cfg.skip_nonfinite and not bool(torch.isfinite(distributed.sum_across(total.clone()))):
            # a sync per step, only when asked; every worker sees the same global loss
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()  # the schedule stays a function of the step number
            self.skipped += 1
            return torch.zeros_like(total)
        if self.cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            self.grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        elif self.measure_grad_norm:
            self.scaler.unscale_(self.optimizer)
            self.grad_norm = nn.utils.get_total_norm([p.grad for p in self.model.parameters() if p.grad is not None])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return total

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        parts = [group.get("parts") for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, named in zip(self.optimizer.param_groups, parts):  # saved by an msr that did not name them
            if named is not None:
                group.setdefault("parts", named)
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.skipped = state["skipped"]


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


@dataclass
class LoopState:
    """Where the loop stands. `state_dict` is trainer_state.pt's layout (the trainer adds its own
    keys): the flat dict of earlier versions, so their run folders still resume."""

    early_stopping: EarlyStopping
    step: int = 0
    tokens: int = 0  # trained on, padding left out
    train_seconds: float = 0.0  # logging and evaluation left out
    running_loss: float | torch.Tensor = 0.0  # summed on the device since the last log line: no sync per step
    running_steps: int = 0
    metrics: dict = field(default_factory=dict)  # the latest evaluation's
    stopped_early: bool = False  # not saved: a resumed run trains on to its next evaluation
    elapsed_before: float = 0.0  # wall seconds of the run before this process took it over (a resume)
    started: float = field(default_factory=time.perf_counter)  # when this process began the run
    _clock: float = field(default=0.0, repr=False)  # when training time last started counting

    def state_dict(self) -> dict:
        return {"step": self.step, "metrics": self.metrics, "tokens": self.tokens, "train_seconds": self.train_seconds,
                "running_loss": distributed.total_across(self.running_loss), "running_steps": self.running_steps,
                "elapsed_seconds": self.elapsed(),
                "early_stopping": self.early_stopping.state_dict(), "rng": rng_state(), **worker_rng()}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.tokens, self.train_seconds = state["step"], state["tokens"], state["train_seconds"]
        # each worker holds its share of the running loss (the shares sum to the saved total)
        self.running_loss = state["running_loss"] / distributed.world_size()
        self.running_steps = state["running_steps"]
        self.metrics = state["metrics"]
        self.elapsed_before = state.get("elapsed_seconds", 0.0)  # saved by msr since elapsed_seconds exists
        self.early_stopping.load_state_dict(state["early_stopping"])
        set_rng_state(state["rng"])

    def elapsed(self) -> float:
        """Wall seconds since the run began, start-up, evaluations and earlier sessions included:
        history.jsonl's `elapsed_seconds`, from which any run's time to a target is read."""
        return round(self.elapsed_before + time.perf_counter() - self.started, 3)

    def start_clock(self) -> None:
        self._clock = time.perf_counter()

    @contextmanager
    def clock_paused(self):
        """Time spent in this block is not training time (tokens_per_second leaves it out)."""
        self.train_seconds += time.perf_counter() - self._clock
        try:
            yield
        finally:
            self._clock = time.perf_counter()


def due(step: int, every: int, last: int) -> bool:
    """Logging and evaluation come every `every` steps and at the last one."""
    return step % every == 0 or step == last


def fit(trainer: Trainer, train: EncodedSplit, val: EncodedSplit, cfg, seed: int,
        log_history: Callable[[dict], None], save: Callable[[str, dict], None],
        interactive: bool = False, resume: dict | None = None, language_model: bool = False,
        started: float | None = None, curriculum=None) -> dict:
    """Train for cfg.max_steps optimizer steps (or until early stopping); returns a summary
    whose validation metrics are those of the best evaluation (the `best` checkpoint).

    `resume` is the state a `last` checkpoint saved: training goes on from its step with the
    same optimizer, early-stopping record, random streams and data order, as if never interrupted.
    A `language_model` is validated by next-token accuracy: a whole block is never exactly right.
    `started` (a time.perf_counter reading) is when the run began, for elapsed_seconds;
    `curriculum` (a curriculum/ config; none by default) which rows the batches come from."""
    from msr.config.curriculum import CurriculumConfig

    state = LoopState(EarlyStopping(cfg.early_stopping), started=started or time.perf_counter())
    order = Curriculum(curriculum or CurriculumConfig(), train.steps, val.steps, cfg, seed)
    if resume is not None:
        trainer.load_state_dict(resume)
        state.load_state_dict(resume)
        order.load_state_dict(resume.get("curriculum"))
        log.info("resuming at step %d of %d", state.step, cfg.max_steps)
    worker_streams(resume, seed, state.step)
    targets = (train.labels != IGNORE).sum(1).cpu()  # per row, so a step's target tokens need no sync
    sync = torch.cuda.synchronize if train.inputs.is_cuda else (lambda: None)

    def checkpoint(name: str) -> None:
        save(name, {**trainer.state_dict(), **state.state_dict(), "curriculum": order.state_dict()})

    trainer.model.train()
    state.start_clock()
    with Progress(cfg.max_steps, interactive, start=state.step) as progress, GracefulStop() as stop:
        while state.step < cfg.max_steps and not state.stopped_early:
            lr = logged_lr(trainer.optimizer)  # the lr this step gives the body
            trainer.measure_grad_norm = due(state.step + 1, cfg.log_every, cfg.max_steps)
            optimizer_step(trainer, state, train, targets, order, cfg.grad_accum_steps)
            if trainer.refresh is not None and trainer.refresh(state.step, log_history):  # rows rewritten
                targets = (train.labels != IGNORE).sum(1).cpu()
            if due(state.step, cfg.log_every, cfg.max_steps):
                log_training(state, lr, trainer.grad_norm, log_history, progress, order.logged())
            evaluated = due(state.step, cfg.eval_every, cfg.max_steps)
            if evaluated:
                sync()  # the steps' queued work is training time
                with state.clock_paused():
                    validate(trainer, val, cfg, state, log_history, checkpoint, language_model, seed, order)
            periodic = evaluated if not cfg.checkpoint_every else state.step % cfg.checkpoint_every == 0
            paused = state.step == cfg.stop_at
            stopping = distributed.any_across(stop.signal is not None)  # the workers stop at the same step
            if stop.signal is not None:
                log.warning("stopping (%s): checkpoints/last first; signal again to stop at once",
                            signal.Signals(stop.signal).name)
            if periodic or stopping or paused or state.step == cfg.max_steps or state.stopped_early:
                checkpoint("last")  # the end, and any stop, always leave a checkpoint to resume from
            if stopping or paused:
                log.info("stopped at step %d; checkpoints/last holds it", state.step)
                raise stop_exception(stop.signal or signal.SIGTERM) if stopping else Paused(state.step)
    if trainer.skipped:
        log.warning("%d steps were skipped for a non-finite loss", trainer.skipped)
    return summary(state, trainer)


def optimizer_step(trainer: Trainer, state: LoopState, train: EncodedSplit, targets: torch.Tensor,
                   order: Callable[[int], torch.Tensor], micro_batches: int) -> None:
    """One optimizer step over the next `micro_batches` batches of the data order (this
    worker's share of each, in a data-parallel run; `targets` counts each row's target tokens)."""
    batches, target_tokens = [], 0
    for micro in range(micro_batches):
        index = order(state.step * micro_batches + micro)
        state.tokens += int(train.lengths[index].sum())
        target_tokens += int(targets[index].sum())
        batches.append(train.batch(distributed.shard(index)))
    state.running_loss = state.running_loss + trainer.step(batches, target_tokens)
    state.running_steps += 1
    state.step += 1


def log_training(state: LoopState, lr: float, grad_norm: torch.Tensor | None, log_history: Callable[[dict], None],
                 progress: Progress, extra: dict | None = None) -> None:
    """The mean training loss since the last log line (and the logged step's gradient norm,
    none when that step was skipped): the one device sync per log interval."""
    loss = distributed.total_across(state.running_loss) / state.running_steps
    state.running_loss, state.running_steps = 0.0, 0
    if not math.isfinite(loss):
        raise TrainingFailed(f"the training loss is {loss} at step {state.step}")
    with state.clock_paused():
        speed = state.tokens / max(state.train_seconds, 1e-9)
        norm = {} if grad_norm is None else {"grad_norm": float(grad_norm)}
        log_history({"step": state.step, "train/loss": loss, "lr": lr, **norm, "tokens_per_second": speed,
                     **(extra or {}), "elapsed_seconds": state.elapsed()})
        progress.update(state.step, loss, lr, speed)


def validation_metrics(model: nn.Module, val: EncodedSplit, cfg, autocast, language_model: bool,
                       rows: torch.Tensor | None = None) -> dict:
    """val/loss and val/accuracy (val/token_accuracy for a language model) on `rows` of `val`."""
    return metrics_of(evaluate(model, val, cfg.eval_batch_size, autocast, rows), language_model)


def metrics_of(result: dict, language_model: bool) -> dict:
    score = "token_accuracy" if language_model else "accuracy"
    return {"val/loss": result["loss"], f"val/{score}": result[score]}


def estimate_rows(size: int, cfg, seed: int, step: int) -> torch.Tensor | None:
    """The validation rows an evaluation at `step` scores: with trainer.eval_iters, a random sample
    of that many batches, drawn afresh at each evaluation (a function of seed and step, so a
    resumed run draws the same); else None, the whole split."""
    if not cfg.eval_iters or cfg.eval_iters * cfg.eval_batch_size >= size:
        return None
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randperm(size, generator=generator)[: cfg.eval_iters * cfg.eval_batch_size]


def validate(trainer: Trainer, val: EncodedSplit, cfg, state: LoopState, log_history: Callable[[dict], None],
             checkpoint: Callable[[str], None], language_model: bool, seed: int, curriculum: Curriculum) -> None:
    """Evaluate on `val` (or trainer.eval_iters batches of it); keep checkpoints/best when it is the
    best so far; stop early once early_stopping.patience evaluations brought no improvement; a
    mastery curriculum may open its next level."""
    rows = estimate_rows(len(val), cfg, seed, state.step)
    result = evaluate(trainer.model, val, cfg.eval_batch_size, trainer.autocast, rows)
    state.metrics = metrics_of(result, language_model)
    curriculum.evaluated(result, state.step)
    stopper = state.early_stopping
    improved = stopper.update(state.metrics, state.step)
    log_history({"step": state.step, **state.metrics, "elapsed_seconds": state.elapsed()})
    name = next(key for key in state.metrics if key != "val/loss")
    sample = "" if rows is None else f" (estimated on {len(rows):,} rows)"
    log.info("step %d: val loss %.4f, %s %.4f%s%s", state.step, state.metrics["val/loss"],
             name.replace("/", " ").replace("_", " "), state.metrics[name], sample, " (best so far)" if improved else "")
    if improved:
        checkpoint("best")
    if stopper.should_stop and state.step < cfg.max_steps:
        state.stopped_early = True
        log.info("early stopping: %s has not improved by more than %g for %d evaluations (best %.4f at step %d)",
                 stopper.cfg.monitor, stopper.cfg.min_delta, stopper.cfg.patience, stopper.best, stopper.best_step)


def summary(state: LoopState, trainer: Trainer) -> dict:
    return {
        "steps": state.step,
        "best_step": state.early_stopping.best_step,
        "stopped_early": state.stopped_early,
        "skipped_steps": trainer.skipped,
        "tokens": state.tokens,
        "train_seconds": state.train_seconds,
        "tokens_per_second": state.tokens / max(state.train_seconds, 1e-9),
        "val": state.early_stopping.best_metrics,
    }
