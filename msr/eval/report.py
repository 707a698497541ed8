"""What `msr evaluate` records: the split's metrics and error breakdowns, how the split was kept
apart from the training data, and one predictions.jsonl line per example (a training run
writes its test split's in the same format)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from msr.config import DecodeConfig
from msr.data import ANSWER_MARK, answer_of
from msr.data.summary import MAX_LABELS
from msr.eval import scores
from msr.eval.answers import Answers, answer
from msr.eval.by_task import task_breakdown
from msr.runs import atomic_write

log = logging.getLogger("msr")


def held_out_record(data, seen, split: str, limit: int) -> dict | None:
    """How the evaluated split was kept apart from the runs' training data, counted again on
    the examples themselves (not assumed from how they were drawn)."""
    if split == "train":
        return None
    raw = data.raw[split][: limit or None]
    overlap = sum(r["input"] in seen.inputs for r in raw)
    if data.excluded:
        log.info("%s: %d drawn examples were inputs the evaluated run(s) trained on and were left out; %d of the "
                 "%d %s inputs are in their training data", split, data.excluded, overlap, len(raw), split)
    record = {"overlap": overlap, "excluded": data.excluded, "training_inputs": len(seen.inputs), "runs": seen.runs}
    return {**record, "unchecked": seen.unchecked} if seen.unchecked else record


def build_report(split: str, rows: list[dict], predictions, correct: list[bool], teacher_forced: dict,
                 chance: float | None) -> dict:
    n = len(rows)
    metrics = {
        f"{split}/accuracy": sum(correct) / n,
        f"{split}/token_accuracy": teacher_forced["token_accuracy"],
        f"{split}/oracle_length_accuracy": teacher_forced["oracle_length_accuracy"],  # never the headline
        f"{split}/loss": teacher_forced["loss"],
        f"{split}/perplexity": math.exp(min(teacher_forced["loss"], 50.0)),
    }
    targets = [r["target"] for r in rows]
    scratchpad = any(ANSWER_MARK in t for t in targets)
    if scratchpad:  # the answer after #### is scored alone, too
        metrics[f"{split}/answer_accuracy"] = sum(answer_of(p) == answer_of(t)
                                                 for p, t in zip(predictions, targets)) / n
    steps = [r.get("steps", -1) for r in rows]
    detail = scores.steps_breakdown(correct, steps)
    report = {
        "metrics": metrics,
        "accuracy_by_steps": {k: v["accuracy"] for k, v in detail.items()},
        "steps_detail": detail,
        "compounding_fit": scores.compounding_fit(detail, chance),
        **task_breakdown(rows, correct),  # a mixture's rows carry their task
    }
    if len(set(targets)) <= MAX_LABELS and not scratchpad:
        report["classification"] = scores.classification_report(targets, [" ".join(p.split()) for p in predictions])
    else:
        report["text_metrics"] = {**scores.sacrebleu_scores(list(predictions), targets),
                                  **scores.diversity(list(predictions))}
    return report


def write_predictions(path: Path, rows: list[dict], answers: Answers, correct: list[bool],
                      target_logprobs: list[float], with_votes: bool) -> None:
    def write(f) -> None:
        columns = zip(rows, answers.texts, correct, answers.logprobs, target_logprobs, answers.votes)
        for r, p, ok, lp, tlp, v in columns:
            line = {"input": r["input"], "target": r["target"], "prediction": p, "correct": ok,
                    "steps": r.get("steps"), "logprob": round(lp, 4), "target_logprob": round(tlp, 4)}
            if "task" in r:  # a mixture's task, which accuracy_by_task counts by
                line["task"] = r["task"]
            if with_votes:
                line["votes"] = v
            f.write(json.dumps(line) + "\n")

    atomic_write(path, write)


def training_predictions(path: Path, model, tokenizer, rows: list[dict], scored: dict, device) -> None:
    """A training run's predictions.jsonl for `rows` (its test split), `scored` by `evaluate`, in
    msr evaluate's format, with `correct` exactly as the run's test accuracy counts it. A row that
    teacher forcing scores correct is its target (greedy decoding writes exactly that, with the
    target's log-probability); only the others are decoded, greedily, to show the wrong answer."""
    correct = scored["correct"].tolist()
    target_logprobs = scored["logprobs"].tolist()
    texts = [r["target"] for r in rows]
    logprobs = list(target_logprobs)
    wrong = [i for i, ok in enumerate(correct) if not ok]
    decoded = answer(model, tokenizer, [rows[i]["input"] for i in wrong], DecodeConfig(), device, seed=0)
    for i, text, logprob in zip(wrong, decoded.texts, decoded.logprobs):
        texts[i], logprobs[i] = text, logprob
    answers = Answers(texts=texts, votes=[1] * len(rows), logprobs=logprobs, seconds=decoded.seconds,
                      tokens=decoded.tokens)
    write_predictions(path, rows, answers, correct, target_logprobs, with_votes=False)
    log.info("%s: the %d wrong test answers of %d decoded greedily in %.1f s", path.name, len(wrong), len(rows),
             decoded.seconds)
