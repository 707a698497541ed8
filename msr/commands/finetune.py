"""`msr finetune init=RUN`: supervised training that starts from a pretrained run.

The recipe: take the init run's checkpoint and tokenizer, add the task's new symbols to the
vocabulary (and rows for them to the model), freeze or wrap the model as finetune.* asks,
then train and test exactly as `msr train` does. With LoRA the checkpoints hold the merged
model, so evaluate and generate read a fine-tuned run like any other.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict

from msr.commands.train import (EMPTY_SUMMARY, encode_splits, seed_everything, task_splits, test_and_summarize,
                                train_model)
from msr.config import to_object
from msr.device import resolve_device
from msr.errors import UserError
from msr.eval.inference import checkpoint_dir
from msr.runs import RunDir
from msr.train.checkpoint import load_meta, load_tokenizer
from msr.train.transfer import load_pretrained, prepare

log = logging.getLogger("msr")

__all__ = ["EMPTY_SUMMARY", "run"]  # run_command reads EMPTY_SUMMARY from the command's module


def run(dict_cfg, run: RunDir) -> dict:
    cfg = to_object(dict_cfg)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device.type)
    source = checkpoint_dir(cfg.init, cfg.init_checkpoint)
    init = load_meta(source)
    check_architecture(init["model"], asdict(cfg.model), cfg.init)
    kind = init["config"]["data"]["tokenizer"]
    if cfg.data.tokenizer != kind:
        raise UserError(f"data.tokenizer={cfg.data.tokenizer.value}, but init={cfg.init} reads {kind} tokens; "
                        f"a fine-tuned model keeps its tokenizer: leave data.tokenizer out")

    splits = task_splits(cfg, "finetune")
    pretrained = load_tokenizer(source)
    tokenizer, new = pretrained.extend(r["input"] + " " + r["target"] for r in splits["train"])
    if new:
        shown = " ".join(new[:20]) + (" ..." if len(new) > 20 else "")
        log.info("vocabulary: %d symbols from init, %d new from the task's training split (%s): "
                 "embedding and head rows %d -> %d", pretrained.vocab_size, len(new), shown,
                 pretrained.vocab_size, tokenizer.vocab_size)
    data = encode_splits(splits, tokenizer, cfg, device)

    model = load_pretrained(source, cfg.model, tokenizer.vocab_size, device)
    weights_sha256 = hashlib.sha256((source / "model.safetensors").read_bytes()).hexdigest()
    log.info("init: %s (step %s, %s objective, weights sha256 %s)", source, init.get("step"),
             init.get("objective"), weights_sha256[:12])
    new_positions = 0
    if getattr(cfg.model, "positions", None) == "learned":
        new_positions = cfg.model.max_len - init["model"]["max_len"]
        if new_positions:
            log.info("positions: %d from init, %d new (model.max_len %d -> %d), started at their mean; they train",
                     init["model"]["max_len"], new_positions, init["model"]["max_len"], cfg.model.max_len)
    transfer = prepare(model, cfg.model, cfg.finetune, len(new), tokenizer.vocab_size, new_positions)
    _, trainer, result = train_model(cfg, dict_cfg, run, tokenizer, data, device, "supervised", transfer)
    summary = test_and_summarize(transfer.export(), trainer, result, data, splits, cfg, run, device)
    summary["init"] = {"checkpoint": str(source), "step": init.get("step"), "weights_sha256": weights_sha256,
                       "new_symbols": new, "trainable_parameters": transfer.trainable()}
    return summary


def check_architecture(saved: dict, wanted: dict, init: str) -> None:
    """The init run's model, unchanged but for dropout and a longer max_len (positions past the
    init run's are new rows, as new symbols are; sinusoidal ones are computed): other settings
    would not fit its weights, or (heads, shared layers) would load them silently into another
    computation. (`model=` itself is checked by the command line, before composing.)"""
    for key, value in saved.items():
        now = getattr(wanted.get(key), "value", wanted.get(key))  # an enum's value, as meta.json holds it
        if key == "max_len" and now < value:
            raise UserError(f"model.max_len={now}, but init={init} was trained with {value}; model.max_len may "
                            f"grow, not shrink: leave it out or raise it")
        if key not in ("dropout", "max_len") and now != value:
            raise UserError(f"model.{key}={now}, but init={init} was trained with {value}; a fine-tuned "
                            f"model keeps the init run's architecture (only model.dropout may change), though "
                            f"model.max_len may grow")
