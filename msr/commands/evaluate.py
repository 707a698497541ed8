"""`msr evaluate run=RUN`: score a run's checkpoint on a split, and show where the errors are.

The recipe: load the checkpoint(s) and the data (the run's own unless overridden), score the
targets teacher-forced (loss, perplexity, token accuracy, each example's log-probability),
decode every input with the configured strategy, compare with the targets, then break the
accuracy down by reasoning steps and write predictions.jsonl, a plot and metrics.json.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter

from rich.console import Console
from rich.table import Table

from msr.config import check_runs, to_object
from msr.data import ANSWER_MARK, answer_of, load_data
from msr.data.batching import encode
from msr.data.summary import MAX_LABELS
from msr.device import resolve_device
from msr.errors import UserError
from msr.eval import scores
from msr.eval.decoding import decode
from msr.eval.inference import load_models
from msr.eval.metrics import evaluate
from msr.eval.seen import seen_inputs
from msr.runs import RunDir, atomic_write

log = logging.getLogger("msr")

EMPTY_SUMMARY = {"metrics": {}, "accuracy_by_steps": {}}


def run(dict_cfg, run: RunDir) -> dict:
    cfg = to_object(dict_cfg)
    device = resolve_device(cfg.device.type)
    runs = check_runs("run", cfg.run)
    model, tokenizer, meta = load_models(runs, cfg.checkpoint, device)
    if meta.get("objective") == "lm":
        raise UserError(f"run={runs[0]} is a language model (msr pretrain), never taught to answer, so its exact "
                        f"match would say nothing; its validation loss and perplexity are in its metrics.json. "
                        f"Fine-tune it first: msr finetune init={runs[0]}")
    # A split drawn now (other steps, sizes, data) must not share an input with what the runs trained on.
    seen = seen_inputs(runs, cfg.split, cfg.paths)
    data = load_data(cfg.data, cfg.paths, exclude=seen.inputs if cfg.split != "train" else None, split=cfg.split)
    if data.corpus or cfg.split not in data.splits:
        raise UserError(f"data={cfg.data.name} has no {cfg.split} split of input -> target examples")
    rows = data.splits[cfg.split][: cfg.limit or None]
    held_out = held_out_record(data, seen, cfg)
    encoded = encode(rows, tokenizer).to(device)
    check_fits(encoded, getattr(model, "max_len", None), cfg.split)
    if encoded.unknown_tokens:
        log.warning("%d symbols of the %s split are not in the run's vocabulary and map to <unk>",
                    encoded.unknown_tokens, cfg.split)

    teacher_forced = evaluate(model, encoded, cfg.decode.batch_size)
    t0 = time.perf_counter()
    prompts = [ids + [tokenizer.sep_id] for ids in tokenizer.encode_batch([r["input"] for r in rows])]
    decoded = decode(model, prompts, tokenizer.eos_id, cfg.decode, device, cfg.seed,
                     banned=(tokenizer.pad_id, tokenizer.unk_id, tokenizer.sep_id))
    decode_seconds = time.perf_counter() - t0
    chosen = [vote([tokenizer.decode(d.ids) for d in samples]) for samples in decoded]
    predictions = [text for text, _, _ in chosen]
    votes = [count for _, count, _ in chosen]
    logprobs = [samples[index].logprob for samples, (_, _, index) in zip(decoded, chosen)]
    correct = [same(p, r["target"]) for p, r in zip(predictions, rows)]

    report = build_report(cfg, rows, predictions, correct, teacher_forced, seen.chance)
    summary = {
        "source_runs": runs,
        "checkpoint": cfg.checkpoint,
        "split": cfg.split,
        "examples": len(rows),
        **({"held_out": held_out} if held_out else {}),
        **report,
        "decode": {"strategy": cfg.decode.strategy.value, "seconds": round(decode_seconds, 3),
                   "tokens_per_second": round(sum(len(s[0].ids) + 1 for s in decoded) / max(decode_seconds, 1e-9), 1)},
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": str(device),
    }
    write_predictions(run, rows, predictions, correct, logprobs, teacher_forced["logprobs"].tolist(), votes, cfg)
    if summary["steps_detail"]:
        scores.plot_accuracy_by_steps(summary["steps_detail"], summary["compounding_fit"],
                                      run.path / "accuracy_by_steps.png",
                                      title=f"{meta.get('task', '')} {cfg.split}, {meta['model']['name']}")
    show(summary)
    return summary


def check_fits(encoded, limit: int | None, split: str) -> None:
    """A Transformer reads at most model.max_len tokens: longer examples are refused, never cut."""
    over = int((encoded.lengths > limit).sum()) if limit is not None and len(encoded) else 0
    if over:
        raise UserError(f"{over} of the {len(encoded)} {split} examples are longer than the run's model.max_len="
                        f"{limit} tokens (the longest has {int(encoded.lengths.max())}); evaluate on shorter ones, "
                        f"e.g. a lower data.{split}.max_steps")


def held_out_record(data, seen, cfg) -> dict | None:
    """How the evaluated split was kept apart from the runs' training data, counted again on
    the examples themselves (not assumed from how they were drawn)."""
    if cfg.split == "train":
        return None
    raw = data.raw[cfg.split][: cfg.limit or None]
    overlap = sum(r["input"] in seen.inputs for r in raw)
    if data.excluded:
        log.info("%s: %d drawn examples were inputs the evaluated run(s) trained on and were left out; %d of the "
                 "%d %s inputs are in their training data", cfg.split, data.excluded, overlap, len(raw), cfg.split)
    return {"overlap": overlap, "excluded": data.excluded, "training_inputs": len(seen.inputs), "runs": seen.runs}


def vote(samples: list[str]) -> tuple[str, int, int]:
    """The majority final answer over the samples (self-consistency): the first sample that
    gives it, its votes and its index; with one sample, that sample."""
    answers = [answer_of(s) for s in samples]
    majority, count = Counter(answers).most_common(1)[0]
    index = answers.index(majority)
    return samples[index], count, index


def same(prediction: str, target: str) -> bool:
    return prediction.split() == target.split()


def build_report(cfg, rows: list[dict], predictions, correct: list[bool], teacher_forced: dict,
                 chance: float | None) -> dict:
    split = cfg.split
    n = len(rows)
    metrics = {
        f"{split}/accuracy": sum(correct) / n,
        f"{split}/token_accuracy": teacher_forced["token_accuracy"],
        f"{split}/loss": teacher_forced["loss"],
        f"{split}/perplexity": math.exp(min(teacher_forced["loss"], 50.0)),
    }
    targets = [r["target"] for r in rows]
    if any(ANSWER_MARK in t for t in targets):  # scratchpad targets: the answer alone, too
        metrics[f"{split}/answer_accuracy"] = sum(answer_of(p) == answer_of(t)
                                                 for p, t in zip(predictions, targets)) / n
    steps = [r.get("steps", -1) for r in rows]
    detail = scores.steps_breakdown(correct, steps)
    report = {
        "metrics": metrics,
        "accuracy_by_steps": {k: v["accuracy"] for k, v in detail.items()},
        "steps_detail": detail,
        "compounding_fit": scores.compounding_fit(detail, chance),
    }
    labels = set(targets)
    if len(labels) <= MAX_LABELS and not any(ANSWER_MARK in t for t in targets):
        report["classification"] = scores.classification_report(targets, [" ".join(p.split()) for p in predictions])
    else:
        report["text_metrics"] = {**scores.sacrebleu_scores(list(predictions), targets),
                                  **scores.diversity(list(predictions))}
    return report


def write_predictions(run: RunDir, rows, predictions, correct, logprobs, target_logprobs, votes, cfg) -> None:
    def write(f) -> None:
        for r, p, ok, lp, tlp, v in zip(rows, predictions, correct, logprobs, target_logprobs, votes):
            line = {"input": r["input"], "target": r["target"], "prediction": p, "correct": ok,
                    "steps": r.get("steps"), "logprob": round(lp, 4), "target_logprob": round(tlp, 4)}
            if cfg.decode.self_consistency > 1:
                line["votes"] = v
            f.write(json.dumps(line) + "\n")

    atomic_write(run.path / "predictions.jsonl", write)


def show(summary: dict) -> None:
    out = Console()
    split = summary["split"]
    table = Table("metric", "value", title=f"{summary['examples']:,} {split} examples, "
                  f"{summary['decode']['strategy']} decoding")
    for key, value in summary["metrics"].items():
        table.add_row(key, f"{value:.4f}")
    out.print(table)
    if summary["steps_detail"]:
        steps = Table("steps", "n", "accuracy", "95% interval", title="accuracy by reasoning steps")
        for k, row in summary["steps_detail"].items():
            steps.add_row(k, str(row["n"]), f"{row['accuracy']:.3f}", f"{row['ci95'][0]:.3f} – {row['ci95'][1]:.3f}")
        out.print(steps)
    fit = summary["compounding_fit"]
    if fit:
        out.print(f"error compounding: {scores.describe_fit(fit)}")
    if "classification" in summary:
        report = summary["classification"]
        confusion = report["confusion"]
        matrix = Table("true \\ predicted", *confusion["columns"], title=f"confusion (macro F1 {report['macro_f1']:.3f}, "
                       f"micro F1 {report['micro_f1']:.3f})")
        for label, counts in zip(confusion["labels"], confusion["matrix"]):
            matrix.add_row(label, *map(str, counts))
        out.print(matrix)
    if "text_metrics" in summary:
        t = summary["text_metrics"]
        out.print(f"BLEU {t['bleu']:.2f}  chrF {t['chrf']:.2f}  TER {t['ter']:.2f}  "
                  f"distinct-1/2 {t['distinct_1']:.3f}/{t['distinct_2']:.3f}  repetition {t['repetition_rate']:.3f}")
