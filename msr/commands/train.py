"""`msr train`: supervised training from scratch on a task (input -> target).

The recipe: validate the config, seed, draw the splits, build the vocabulary, train with
periodic validation, then score the best checkpoint on the test split (history.jsonl, the
TensorBoard event file and curves.png record it all; predictions.jsonl the test answers).
With distill.teacher=RUN the vocabulary is the teacher's and the loss mixes in its soft targets
(msr/train/distill.py); metrics.json's `distill` sets teacher and student side by side.
"""

from __future__ import annotations

from msr.data.tokenizer import TextTokenizer
from msr.device import check_precision
from msr.runs import RunDir
from msr.train.distill import Teacher
from msr.train.recipe import (EMPTY_SUMMARY, encode_splits, new_model, run_logger, start, task_splits,
                              test_and_summarize, train_model, training_texts)

__all__ = ["EMPTY_SUMMARY", "encode_splits", "run"]  # run_command reads EMPTY_SUMMARY from the command's module


def run(dict_cfg, run: RunDir) -> dict:
    cfg, device = start(dict_cfg)
    splits = task_splits(cfg, "train")
    teacher = Teacher(cfg.distill, device) if cfg.distill.teacher else None  # distill.teacher: its soft targets
    if teacher:  # it is scored beside the student under the run's autocast: refuse now, not after training
        check_precision(cfg.trainer.precision, device, teacher.model)
    tokenizer = teacher.tokenizer if teacher else \
        TextTokenizer.build(training_texts(splits), cfg.data.tokenizer, cfg.data.vocab_size)
    data = encode_splits(splits, tokenizer, cfg, device)
    model = new_model(cfg, tokenizer, device)
    with run_logger(run, cfg) as history:
        trainer, result = train_model(model, cfg, dict_cfg, run, history, tokenizer, data, device, "supervised",
                                      criterion=teacher.criterion if teacher else None)
        summary = test_and_summarize(model, trainer, result, data, splits, cfg, dict_cfg, run, history, tokenizer,
                                     device)
    if teacher:
        summary["distill"] = teacher.side_by_side(model, data["test"], cfg.trainer.eval_batch_size, trainer.autocast)
    return summary
