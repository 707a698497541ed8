"""`msr train`: supervised training from scratch on a task (input -> target).

The recipe: validate the config, seed, draw the splits, build the vocabulary, train with
periodic validation, then score the best checkpoint on the test split.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from msr.config import to_object
from msr.data import content_fingerprint, load_data
from msr.data.batching import encode
from msr.data.tokenizer import TextTokenizer
from msr.device import resolve_device
from msr.errors import UserError
from msr.eval.metrics import evaluate
from msr.models import build_model, count_parameters
from msr.runs import RunDir, interactive, saved_overrides
from msr.train.checkpoint import (latest_checkpoint, load_meta, load_tokenizer, load_trainer_state,
                                  load_training_weights, save_checkpoint)
from msr.train.loop import Trainer, fit
from msr.train.optim import build_optimizer, build_scheduler
from msr.train.transfer import Transfer

log = logging.getLogger("msr")

# metrics.json keys a training run always has, whatever stopped it
EMPTY_SUMMARY = {"metrics": {}, "accuracy_by_steps": {}, "steps": 0, "tokens_per_second": None, "parameters": None}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


# settings that shape the optimizer's parameter groups and rates: its saved state is for them
FIXED_ON_RESUME = ("optimizer", "finetune")
HORIZON_SCHEDULES = ("cosine", "linear")  # they decay over trainer.max_steps


def restore(folder: Path, model, tokenizer, optimizer, scheduler, cfg, dict_cfg, device) -> dict | None:
    """Load the newest checkpoint of `folder` into the freshly built objects; its trainer state."""
    source = latest_checkpoint(folder)
    if source is None:
        log.info("resume=%s: no checkpoint was written yet; starting from step 0", folder)
        return None
    if load_tokenizer(source).to_str() != tokenizer.to_str():
        raise UserError(f"resume={folder}: the vocabulary built from today's data differs from the run's; "
                        f"the data settings or files changed since it started")
    saved = load_meta(source)["config"]
    for key in FIXED_ON_RESUME:
        now = OmegaConf.to_container(dict_cfg[key], resolve=True) if key in dict_cfg else None
        if saved.get(key) != now:
            changed = sorted(k for k in {**saved.get(key, {}), **(now or {})}
                             if saved.get(key, {}).get(k) != (now or {}).get(k))
            raise UserError(f"resume={folder}: {key}.{changed[0]} differs from the run's; a resumed run goes on "
                            f"with the settings it started with (start a new run to change them)")
    load_training_weights(source, model, device)
    state = load_trainer_state(source)
    if state["step"] >= cfg.trainer.max_steps:
        raise UserError(f"resume={folder}: the run already reached trainer.max_steps={cfg.trainer.max_steps}")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    horizon = saved.get("trainer", {}).get("max_steps")
    if horizon != cfg.trainer.max_steps and cfg.scheduler.name in HORIZON_SCHEDULES:
        log.warning("trainer.max_steps is %d now, %s before: the %s schedule's horizon changed with it, so from step "
                    "%d the learning rate follows the new curve (not the one the run started on)",
                    cfg.trainer.max_steps, horizon, cfg.scheduler.name, state["step"])
    log.info("resuming %s from %s", folder, source.name)
    return state


def resume_overrides(folder: Path) -> list[str]:
    """The overrides this resume added to those the run started with."""
    from hydra.core.hydra_config import HydraConfig

    saved = saved_overrides(folder)
    return [o for o in HydraConfig.get().overrides.task if o not in saved and not o.startswith("resume=")]


def train_model(cfg, dict_cfg, run: RunDir, tokenizer: TextTokenizer, data: dict, device, objective: str,
                transfer: Transfer | None = None):
    """Build the model and its optimizer (or take a pretrained one from `transfer`), resume if
    asked, train with checkpoints, then load the best weights; (model, trainer, fit's summary).
    Shared by train, pretrain and finetune."""
    if transfer is None:
        transfer = Transfer(build_model(cfg.model, tokenizer.vocab_size).to(device), lr_scale={})
        log.info("model %s: %s parameters on %s", cfg.model.name, f"{count_parameters(transfer.model):,}", device)
    model = transfer.model
    run.progress["parameters"] = count_parameters(model)
    optimizer = build_optimizer(cfg.optimizer, model, transfer.lr_scale, no_decay=transfer.new_rows)
    scheduler = build_scheduler(cfg.scheduler, optimizer, cfg.trainer.max_steps)
    trainer = Trainer(model, optimizer, scheduler, cfg.trainer, device)
    meta = {"model": asdict(cfg.model), "vocab_size": tokenizer.vocab_size, "task": cfg.data.name,
            "objective": objective, "config": OmegaConf.to_container(dict_cfg, resolve=True)}

    def save(name: str, state: dict) -> None:
        run.progress["steps"] = state["step"]  # what a resume would go on from
        trainer_state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), **state}
        save_checkpoint(run.checkpoints / name, transfer.export(), tokenizer, {**meta, "step": state["step"],
                        "metrics": state["metrics"]}, trainer_state, keep=cfg.trainer.keep_last if name == "last" else 1,
                        training_model=model if transfer.adapters is not None else None)

    resume = None
    if cfg.resume:
        resume = restore(Path(cfg.resume), model, tokenizer, optimizer, scheduler, cfg, dict_cfg, device)
        step = resume["step"] if resume else 0
        run.truncate_history(step)  # what was logged after the checkpoint is done again
        run.record_resume(step, resume_overrides(run.path))
        run.progress["steps"] = step
    result = fit(trainer, data["train"], data["val"], cfg.trainer, cfg.seed, run.log_history, save,
                 interactive=interactive(), resume=resume, language_model=objective == "lm")
    load_training_weights(run.checkpoints / "best", model, device)
    return model, trainer, result


def run(dict_cfg, run: RunDir) -> dict:
    cfg = to_object(dict_cfg)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device.type)

    splits = task_splits(cfg, "train")
    tokenizer = TextTokenizer.build((r["input"] + " " + r["target"] for r in splits["train"]),
                                    cfg.data.tokenizer, cfg.data.vocab_size)
    data = encode_splits(splits, tokenizer, cfg, device)
    model, trainer, result = train_model(cfg, dict_cfg, run, tokenizer, data, device, objective="supervised")
    return test_and_summarize(model, trainer, result, data, splits, cfg, run, device)


def task_splits(cfg, command: str) -> dict[str, list[dict]]:
    dataset = load_data(cfg.data, cfg.paths)
    if dataset.corpus:
        raise UserError(f"data={cfg.data.name} is a text corpus (no input -> target pairs); "
                        f"msr {command} needs a task: choose another data= option")
    return dataset.splits


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
    check_lengths(data, getattr(cfg.model, "max_len", None))
    return data


def test_and_summarize(model, trainer, result: dict, data: dict, splits: dict, cfg, run: RunDir, device) -> dict:
    """Score the best checkpoint's model on the test split; what metrics.json says of the run."""
    test = evaluate(model, data["test"], cfg.trainer.eval_batch_size, trainer.autocast)
    log.info("test accuracy %.4f (best checkpoint, step %d); by steps: %s", test["accuracy"],
             result["best_step"], ", ".join(f"{k}: {v:.3f}" for k, v in test["by_steps"].items()))
    metrics = {
        **result["val"],
        "test/loss": test["loss"],
        "test/accuracy": test["accuracy"],
        "test/token_accuracy": test["token_accuracy"],
    }
    run.log_history({"step": result["steps"], **{k: v for k, v in metrics.items() if k.startswith("test/")}})
    return {"metrics": metrics, "accuracy_by_steps": test["by_steps"],
            **training_summary(result, model, device, cfg.seed, content_fingerprint(splits))}


def training_summary(result: dict, model, device, seed: int, data_fingerprint: str) -> dict:
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
