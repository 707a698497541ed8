"""The steps the training commands share: `msr train`, `msr pretrain` and `msr finetune` are
each a short recipe of them. Start (typed config, seeds, device), draw and encode the splits,
train with checkpoints and resume, then score and summarise the run for metrics.json."""

from __future__ import annotations

import logging
import os
import random
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from msr import distributed
from msr.config import to_object
from msr.data import content_fingerprint, load_data
from msr.data.batching import encode
from msr.data.tokenizer import TextTokenizer
from msr.device import resolve_device
from msr.errors import UserError
from msr.eval.by_task import flat_task_metrics, task_breakdown
from msr.eval.metrics import evaluate
from msr.eval.report import training_predictions
from msr.models import build_model_for, count_parameters
from msr.logs import interactive
from msr.runs import RunDir
from msr.train.checkpoint import load_training_weights, save_checkpoint
from msr.train.adversarial import adversarial_summary, refresher
from msr.train.loop import Trainer, fit, validation_metrics
from msr.train.optim import build_optimizer, build_scheduler
from msr.train.resume import restore, resume_overrides
from msr.train.tensorboard import RunLogger

log = logging.getLogger("msr")

# metrics.json keys a supervised training run always has, whatever stopped it
EMPTY_SUMMARY = {"metrics": {}, "accuracy_by_steps": {}, "steps": 0, "tokens_per_second": None, "parameters": None}


def start(dict_cfg):
    """The typed config (validated), every random stream seeded from cfg.seed, and the device."""
    cfg = to_object(dict_cfg)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device.type)
    if distributed.launched():
        workers = distributed.world_size()
        if cfg.trainer.batch_size % workers:
            raise UserError(f"trainer.batch_size={cfg.trainer.batch_size} is the global batch of a step, shared by "
                            f"{workers} workers: give a multiple of {workers}")
        if device.type == "cuda":  # each worker on its own GPU of the machine
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return cfg, device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def task_splits(cfg, command: str) -> dict[str, list[dict]]:
    dataset = load_data(cfg.data, cfg.paths)
    if dataset.corpus:
        raise UserError(f"data={cfg.data.name} is a text corpus (no input -> target pairs); "
                        f"msr {command} needs a task: choose another data= option")
    return dataset.splits


def training_texts(splits: dict[str, list[dict]]) -> Iterator[str]:
    """The texts a task's vocabulary comes from: its training split's inputs and targets."""
    return (r["input"] + " " + r["target"] for r in splits["train"])


def encode_splits(splits: dict[str, list[dict]], tokenizer: TextTokenizer, cfg, device) -> dict:
    """Each split as padded tensors on `device`, refused if the model cannot take its lengths."""
    from msr.config import TaskConfig
    from msr.data.summary import input_counts, repeats_warning

    data = {name: encode(records, tokenizer).to(device) for name, records in splits.items()}
    counts = {name: input_counts(records) for name, records in splits.items()}
    log.info("data %s: %s; vocabulary %d tokens (%s)", cfg.data.name,
             ", ".join(f"{name} {c['examples']:,} rows ({c['distinct_inputs']:,} distinct inputs)"
                       for name, c in counts.items()), tokenizer.vocab_size, cfg.data.tokenizer.value)
    for name, c in counts.items():
        warning = repeats_warning(name, c, isinstance(cfg.data, TaskConfig))
        if warning:
            log.warning(warning)
    for name, split in data.items():
        if split.unknown_tokens:
            log.warning("%s: %d symbols are not in the training vocabulary and map to <unk>", name,
                        split.unknown_tokens)
    check_lengths(data, length_limit(cfg.model))
    return data


def length_limit(model_cfg) -> int | None:
    """The longest sequence the model takes: learned and sinusoidal tables end at max_len (and
    random positions are drawn below it); rope, alibi and none have no end."""
    max_len = getattr(model_cfg, "max_len", None)  # recurrent models have none
    walled = getattr(model_cfg, "positions", "learned") in ("learned", "sinusoidal") or \
        getattr(model_cfg, "random_positions", False)
    return max_len if walled else None


def check_lengths(data: dict, max_len: int | None) -> None:
    """Sequences longer than the model can take are refused with counts, never cut."""
    if max_len is None:
        return
    over = {name: int((split.lengths > max_len).sum()) for name, split in data.items()}
    if any(over.values()):
        longest = max(int(split.lengths.max()) for split in data.values())
        counts = ", ".join(f"{name} {n} of {len(data[name])} ({n / len(data[name]):.1%})"
                           for name, n in over.items() if n)
        raise UserError(f"model.max_len={max_len} is shorter than some sequences ({counts}; the longest "
                        f"has {longest} tokens); raise model.max_len to at least {longest}")


def new_model(cfg, tokenizer: TextTokenizer, device) -> nn.Module:
    """cfg.model, freshly initialised (from the seeded stream), on `device`."""
    model = build_model_for(cfg.model, tokenizer).to(device)
    log.info("model %s: %s parameters on %s", cfg.model.name, f"{count_parameters(model):,}", device)
    return model


def run_logger(run: RunDir, cfg) -> RunLogger:
    """history.jsonl and, unless logger.tensorboard=false, the run's TensorBoard event file."""
    return RunLogger(run, cfg.logger.tensorboard)


def train_model(model: nn.Module, cfg, dict_cfg, run: RunDir, history: RunLogger, tokenizer: TextTokenizer,
                data: dict, device, objective: str, lr_scale: dict[str, float] | None = None,
                new_rows: dict[str, int] | None = None,
                export: Callable[[], nn.Module] | None = None,
                criterion: Callable[..., torch.Tensor] | None = None) -> tuple[Trainer, dict]:
    """Train `model` with checkpoints (resuming cfg.resume if set), logging to `history`, then
    load the best weights into it; (trainer, fit's summary). A fine-tuned model may bring
    per-parameter `lr_scale`s, `new_rows` (frozen tensors whose new rows train, kept out of weight
    decay) and `export`: the model the checkpoints hold (LoRA's merged copy; the trained adapters
    are then saved beside it); `criterion` replaces the Trainer's cross-entropy (a distilling teacher's)."""
    run.progress["parameters"] = count_parameters(model)
    optimizer = build_optimizer(cfg.optimizer, model, lr_scale or {}, no_decay=new_rows or {})
    scheduler = build_scheduler(cfg.scheduler, optimizer, cfg.trainer.max_steps)
    trainer = Trainer(model, optimizer, scheduler, cfg.trainer, device, criterion)
    trainer.refresh = refresher(cfg, model, tokenizer, data["train"], device)  # None unless refresh_every
    meta = {"model": asdict(cfg.model), "vocab_size": tokenizer.vocab_size, "task": cfg.data.name,
            "objective": objective, "attention_mask": getattr(model, "attention_mask", "causal"),
            "config": OmegaConf.to_container(dict_cfg, resolve=True)}
    language_model = objective in ("lm", "masked")  # scored by token accuracy: a block is never all right

    def save(name: str, state: dict) -> None:
        run.progress["steps"] = state["step"]  # what a resume would go on from
        saved = export() if export is not None else model
        if run.writes:  # rank 0; the others wait, so that what they read next (best, at the end) is whole
            save_checkpoint(run.checkpoints / name, saved, tokenizer, {**meta, "step": state["step"],
                            "metrics": state["metrics"]}, state, keep=cfg.trainer.keep_last if name == "last" else 1,
                            training_model=model if saved is not model else None)
        distributed.barrier()

    resume, resumed_from = None, None
    if cfg.resume:
        resume = restore(Path(cfg.resume), model, tokenizer, cfg, dict_cfg, device)
        resumed_from = resume["step"] if resume else 0
        run.truncate_history(resumed_from)  # what was logged after the checkpoint is done again
        run.record_resume(resumed_from, resume_overrides(run.path))
        run.progress["steps"] = resumed_from
    history.open(resumed_from)  # the event file drops the same steps
    result = fit(trainer, data["train"], data["val"], cfg.trainer, cfg.seed, history, save,
                 interactive=interactive(), resume=resume, language_model=language_model, started=run.started,
                 curriculum=cfg.curriculum)
    load_training_weights(run.checkpoints / "best", model, device)
    if cfg.trainer.eval_iters:  # the evaluations estimated; the best checkpoint is scored on the whole split
        result["val"] = validation_metrics(model, data["val"], cfg.trainer, trainer.autocast, language_model)
        log.info("best checkpoint on the whole validation split: %s",
                 ", ".join(f"{k} {v:.4f}" for k, v in result["val"].items()))
    return trainer, result


def test_and_summarize(model: nn.Module, trainer: Trainer, result: dict, data: dict, splits: dict, cfg, dict_cfg,
                       run: RunDir, history: RunLogger, tokenizer: TextTokenizer, device) -> dict:
    """Score the best checkpoint's model on the test split (each example's answer to
    predictions.jsonl); what metrics.json says of the run."""
    test = evaluate(model, data["test"], cfg.trainer.eval_batch_size, trainer.autocast)
    log.info("test accuracy %.4f (best checkpoint, step %d); by steps: %s", test["accuracy"],
             result["best_step"], ", ".join(f"{k}: {v:.3f}" for k, v in test["by_steps"].items()))
    if run.writes:
        training_predictions(run.path / "predictions.jsonl", model, tokenizer, splits["test"], test, device)
    metrics = {
        **result["val"],
        "test/loss": test["loss"],
        "test/accuracy": test["accuracy"],
        "test/token_accuracy": test["token_accuracy"],
        "test/oracle_length_accuracy": test["oracle_length_accuracy"],  # the stopping decision taken away
    }
    robust, adversarial = adversarial_summary(model, trainer.refresh, tokenizer, cfg, device)  # trainer.adversarial
    metrics.update(robust)
    by_steps = {f"test/accuracy_by_steps/{k}": v for k, v in test["by_steps"].items()}
    by_task = task_breakdown(splits["test"], test["correct"].tolist())  # {} unless data=mixture
    if by_task:
        log.info("test accuracy by task: %s", ", ".join(f"{k} {v:.3f}" for k, v in by_task["accuracy_by_task"].items()))
    history({"step": result["steps"], **{k: v for k, v in metrics.items() if k.startswith("test/")}, **by_steps,
             **flat_task_metrics("test", by_task)})
    finish(history, result, metrics, dict_cfg)
    return {"metrics": metrics, "accuracy_by_steps": test["by_steps"], **by_task,
            **training_summary(result, model, device, cfg.seed, content_fingerprint(splits)), **adversarial}


def finish(history: RunLogger, result: dict, metrics: dict, dict_cfg) -> None:
    """The run's final metrics with its hyperparameters (the config, less where it resumed from)."""
    config = OmegaConf.to_container(dict_cfg, resolve=True, enum_to_str=True)
    config.pop("resume", None)
    history.finish(result["steps"], metrics, config)


def training_summary(result: dict, model: nn.Module, device, seed: int, data_fingerprint: str) -> dict:
    """What metrics.json says of any training run besides its metrics."""
    return {
        "steps": result["steps"],
        "best_step": result["best_step"],
        "stopped_early": result["stopped_early"],
        "skipped_steps": result["skipped_steps"],
        "tokens_per_second": round(result["tokens_per_second"], 1),
        "train_seconds": round(result["train_seconds"], 3),
        "parameters": count_parameters(model),
        "device": str(device),
        "seed": seed,
        "data_fingerprint": data_fingerprint,
    }
