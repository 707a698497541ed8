"""`msr evaluate run=RUN`: score a run's checkpoint on a split, and show where the errors are.

The recipe: load the checkpoint(s) and the data (the run's own unless overridden), score the
targets teacher-forced (loss, perplexity, token accuracy, each example's log-probability),
decode every input with the configured strategy, compare with the targets, then break the
accuracy down by reasoning steps and write predictions.jsonl, a plot and metrics.json.
"""

from __future__ import annotations

import logging

from msr.config import check_runs, to_object
from msr.config.tto import TTOMethod
from msr.data import load_data
from msr.data.batching import encode
from msr.device import resolve_device
from msr.errors import UserError
from msr.eval import dynamic, scores
from msr.eval.answers import answer, same
from msr.eval.inference import load_models
from msr.eval.metrics import evaluate
from msr.eval.prompts import check_fits
from msr.eval.report import build_report, held_out_record, write_predictions
from msr.eval.seen import chance_level, seen_inputs
from msr.eval.tables import show_evaluation
from msr.runs import RunDir

log = logging.getLogger("msr")

EMPTY_SUMMARY = {"metrics": {}, "accuracy_by_steps": {}}


def run(dict_cfg, run: RunDir) -> dict:
    cfg = to_object(dict_cfg)
    device = resolve_device(cfg.device.type)
    runs = check_runs("run", cfg.run)
    model, tokenizer, meta = load_models(runs, cfg.checkpoint, device)
    tto = cfg.tto.method != TTOMethod.none
    if tto:
        dynamic.check_adaptable_model(model, meta)
    if tto and meta.get("objective") == "lm":  # dynamic evaluation: the split's loss, without and with
        return {"source_runs": runs, "checkpoint": cfg.checkpoint, **dynamic.evaluate_language_model(
            model, tokenizer, meta, cfg), "parameters": sum(p.numel() for p in model.parameters()),
            "device": str(device)}
    if meta.get("objective") in ("lm", "masked"):
        raise UserError(f"run={runs[0]} is a language model (msr pretrain), never taught to answer, so its exact "
                        f"match would say nothing; its validation loss and perplexity are in its metrics.json. "
                        f"Fine-tune it first: msr finetune init={runs[0]}")
    # A split drawn now (other steps, sizes, data) must not share an input with what the runs trained on.
    seen = seen_inputs(runs, cfg.split, cfg.paths)
    data = load_data(cfg.data, cfg.paths, exclude=seen.inputs if cfg.split != "train" else None, split=cfg.split)
    if data.corpus or cfg.split not in data.splits:
        raise UserError(f"data={cfg.data.name} has no {cfg.split} split of input -> target examples")
    rows = data.splits[cfg.split][: cfg.limit or None]
    held_out = held_out_record(data, seen, cfg.split, cfg.limit)
    encoded = encode(rows, tokenizer).to(device)
    check_fits(encoded, getattr(model, "max_len", None), cfg.split)
    if encoded.unknown_tokens:
        log.warning("%d symbols of the %s split are not in the run's vocabulary and map to <unk>",
                    encoded.unknown_tokens, cfg.split)

    teacher_forced = evaluate(model, encoded, cfg.decode.batch_size)
    answers = answer(model, tokenizer, [r["input"] for r in rows], cfg.decode, device, cfg.seed)
    correct = [same(p, r["target"]) for p, r in zip(answers.texts, rows)]
    summary = {
        "source_runs": runs,
        "checkpoint": cfg.checkpoint,
        "split": cfg.split,
        "examples": len(rows),
        **({"held_out": held_out} if held_out else {}),
        **build_report(cfg.split, rows, answers.texts, correct, teacher_forced,
                       seen.chance if seen.chance is not None else chance_level(data.splits.get("train", []))),
        "decode": {"strategy": cfg.decode.strategy.value, "seconds": round(answers.seconds, 3),
                   "tokens_per_second": answers.tokens_per_second},
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": str(device),
    }
    if tto:  # test-time training: the same examples, each scored after steps on its own input
        adapted = dynamic.task_with_tto(model, encoded, cfg, teacher_forced)
        summary["metrics"].update(adapted["metrics"])
        summary["tto"] = adapted["tto"]
    write_predictions(run.path / "predictions.jsonl", rows, answers, correct, teacher_forced["logprobs"].tolist(),
                      with_votes=cfg.decode.self_consistency > 1)
    if summary["steps_detail"]:
        scores.plot_accuracy_by_steps(summary["steps_detail"], summary["compounding_fit"],
                                      run.path / "accuracy_by_steps.png",
                                      title=f"{meta.get('task', '')} {cfg.split}, {meta['model']['name']}")
    show_evaluation(summary)
    return summary
