"""`msr pretrain`: next-token language modelling, every token a target.

The recipe: read the corpus (or a task's inputs, without their answers, one after another),
build the vocabulary from its training part, pack each split into blocks of data.block_size
tokens, train as `msr train` does (checkpoints, resume, early stopping on validation loss),
then report the best checkpoint's validation loss, perplexity and, for characters, bits per
character. The checkpoint says `objective: lm`, so `msr generate` continues text with it.

With pretrain.objective=masked it is BERT's task instead (msr/train/masking.py): the vocabulary
gains <mask>, attention is bidirectional, and the loss and token accuracy count the masked
positions only. The checkpoint says `objective: masked`; `msr finetune` makes it a prefix LM.
"""

from __future__ import annotations

import logging
import math

from msr.data import content_fingerprint, corpus_texts, load_data
from msr.data.batching import pack
from msr.data.tokenizer import TextTokenizer
from msr.errors import UserError
from msr.eval.metrics import evaluate
from msr.runs import RunDir
from msr.train.masking import Masking, masked_splits
from msr.train.recipe import check_lengths, finish, new_model, run_logger, start, train_model, training_summary

log = logging.getLogger("msr")

EMPTY_SUMMARY = {"metrics": {}, "steps": 0, "tokens_per_second": None, "parameters": None}


def run(dict_cfg, run: RunDir) -> dict:
    cfg, device = start(dict_cfg)
    texts = corpus_texts(load_data(cfg.data, cfg.paths))
    tokenizer = TextTokenizer.build([texts["train"]], cfg.data.tokenizer, cfg.data.vocab_size)
    masked = cfg.pretrain.objective == "masked"
    if masked:
        tokenizer = tokenizer.with_mask()
    data = pack_splits(texts, tokenizer, cfg, device)
    if masked:
        data = masked_splits(data, Masking.of(tokenizer, cfg.pretrain), cfg.seed)
    model = new_model(cfg, tokenizer, device)
    if masked:
        model.set_attention("bidirectional")
    with run_logger(run, cfg) as history:
        trainer, result = train_model(model, cfg, dict_cfg, run, history, tokenizer, data, device,
                                      objective="masked" if masked else "lm")
        losses = {"val": result["val"]["val/loss"]}  # the best evaluation is the best checkpoint's
        if "test" in data:
            losses["test"] = evaluate(model, data["test"], cfg.trainer.eval_batch_size, trainer.autocast)["loss"]
        metrics = {}
        for split, loss in losses.items():
            metrics.update({f"{split}/loss": loss, f"{split}/perplexity": math.exp(min(loss, 50.0))})
            if cfg.data.tokenizer == "char" and not masked:  # a masked LM's loss is not a code length
                metrics[f"{split}/bits_per_character"] = loss / math.log(2)
        log.info("best checkpoint (step %d): %s", result["best_step"],
                 ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        if "test" in data:
            history({"step": result["steps"], **{k: v for k, v in metrics.items() if k.startswith("test/")}})
        finish(history, result, metrics, dict_cfg)
    fingerprint = content_fingerprint({split: [{"text": text}] for split, text in texts.items()})
    return {"metrics": metrics, **training_summary(result, model, device, cfg.seed, fingerprint)}


def pack_splits(texts: dict[str, str], tokenizer: TextTokenizer, cfg, device) -> dict:
    """Each split packed into blocks of data.block_size tokens on `device`."""
    data = {}
    for split, text in texts.items():
        ids = tokenizer.encode_batch([text])[0]
        if len(ids) <= cfg.data.block_size:
            raise UserError(f"the {split} split has {len(ids)} tokens, not enough for one block of "
                            f"data.block_size={cfg.data.block_size}; lower data.block_size")
        stride = cfg.data.block_stride if split == "train" else 0  # held-out splits score each token once
        data[split] = pack(ids, cfg.data.block_size, stride).to(device)
        unknown = ids.count(tokenizer.unk_id)
        if unknown:
            log.warning("%s: %d symbols are not in the training vocabulary and map to <unk>", split, unknown)
    log.info("corpus %s: %s blocks of %d tokens; vocabulary %d (%s)", cfg.data.name,
             ", ".join(f"{split} {len(packed):,}" for split, packed in data.items()), cfg.data.block_size,
             tokenizer.vocab_size, cfg.data.tokenizer.value)
    if "val" not in data:
        raise UserError(f"data={cfg.data.name} has no validation split; set data.val_ratio > 0")
    check_lengths(data, getattr(cfg.model, "max_len", None))
    return data
