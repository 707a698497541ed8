"""`msr finetune init=RUN`: supervised training that starts from a pretrained run.

The recipe: take the init run's checkpoint and tokenizer, add the task's new symbols to the
vocabulary (and rows for them to the model), freeze or wrap the model as finetune.* asks,
then train and test exactly as `msr train` does. With LoRA the checkpoints hold the merged
model, so evaluate and generate read a fine-tuned run like any other. A masked-LM init
(pretrain.objective=masked) trains as a prefix LM: its meta.json says `attention_mask: prefix`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict

from msr.errors import UserError
from msr.runs import checkpoint_dir
from msr.runs import RunDir
from msr.train.checkpoint import load_meta, load_tokenizer
from msr.train.recipe import (EMPTY_SUMMARY, encode_splits, run_logger, start, task_splits, test_and_summarize,
                              train_model, training_texts)
from msr.train.transfer import (attention_after, check_architecture, grow_vocabulary, load_pretrained, new_positions,
                                prepare)

log = logging.getLogger("msr")

__all__ = ["EMPTY_SUMMARY", "run"]  # run_command reads EMPTY_SUMMARY from the command's module


def run(dict_cfg, run: RunDir) -> dict:
    cfg, device = start(dict_cfg)
    source = checkpoint_dir(cfg.init, cfg.init_checkpoint)
    init = load_meta(source)
    check_architecture(init["model"], asdict(cfg.model), cfg.init)
    kind = init["config"]["data"]["tokenizer"]
    if cfg.data.tokenizer != kind:
        raise UserError(f"data.tokenizer={cfg.data.tokenizer.value}, but init={cfg.init} reads {kind} tokens; "
                        f"a fine-tuned model keeps its tokenizer: leave data.tokenizer out")

    splits = task_splits(cfg, "finetune")
    tokenizer, new = grow_vocabulary(load_tokenizer(source), training_texts(splits))
    data = encode_splits(splits, tokenizer, cfg, device)
    model = load_pretrained(source, cfg.model, tokenizer, device)
    attention = attention_after(init)
    if attention != "causal":
        model.set_attention(attention, tokenizer.sep_id)
        log.info("attention: %s (init has the %s objective)", attention, init.get("objective"))
    weights_sha256 = hashlib.sha256((source / "model.safetensors").read_bytes()).hexdigest()
    log.info("init: %s (step %s, %s objective, weights sha256 %s)", source, init.get("step"),
             init.get("objective"), weights_sha256[:12])
    transfer = prepare(model, cfg.model, cfg.finetune, len(new), tokenizer.vocab_size,
                       new_positions(init["model"], cfg.model))
    with run_logger(run, cfg) as history:
        trainer, result = train_model(model, cfg, dict_cfg, run, history, tokenizer, data, device, "supervised",
                                      lr_scale=transfer.lr_scale, new_rows=transfer.new_rows, export=transfer.export)
        summary = test_and_summarize(transfer.export(), trainer, result, data, splits, cfg, dict_cfg, run, history,
                                     tokenizer, device)
    summary["init"] = {"checkpoint": str(source), "step": init.get("step"), "weights_sha256": weights_sha256,
                       "new_symbols": new, "trainable_parameters": transfer.trainable()}
    return summary
