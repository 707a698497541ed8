"""What a data set looks like, as plain numbers: sizes, distinct inputs, steps, lengths, labels, overlap.

`input_counts` and `repeats_warning` are shared with `msr train`'s log, so that both report
the same rows and distinct inputs."""

from __future__ import annotations

from collections import Counter

import numpy as np

from msr.data import DataSplits
from msr.data.tokenizer import TextTokenizer

MAX_LABELS = 20  # a target with at most this many distinct values is treated as a label


def summarize(data: DataSplits, tokenizer: TextTokenizer) -> dict:
    if data.corpus:
        return {"corpus": True, "vocab_size": tokenizer.vocab_size,
                "splits": {split: corpus_split(rows[0]["text"], tokenizer) for split, rows in data.splits.items()}}
    train_targets = Counter(r["target"] for r in data.splits["train"])
    is_classification = len(train_targets) <= MAX_LABELS
    return {
        "corpus": False,
        "vocab_size": tokenizer.vocab_size,
        "splits": {split: task_split(rows, tokenizer, is_classification) for split, rows in data.splits.items()},
        "overlap": data.overlap,
    }


def task_split(rows: list[dict], tokenizer: TextTokenizer, labels: bool) -> dict:
    inputs = tokenizer.encode_batch([r["input"] for r in rows])
    targets = tokenizer.encode_batch([r["target"] for r in rows])
    summary = {
        **input_counts(rows),
        "input_tokens": percentiles([len(ids) for ids in inputs]),
        "target_tokens": percentiles([len(ids) for ids in targets]),
        "unknown_tokens": sum(ids.count(tokenizer.unk_id) for ids in (*inputs, *targets)),
    }
    if labels:
        summary["labels"] = dict(Counter(r["target"] for r in rows).most_common())
    if rows and "task" in rows[0]:  # a mixture: how many rows each task has
        summary["tasks"] = dict(sorted(Counter(r["task"] for r in rows).items()))
    return summary


def input_counts(rows: list[dict]) -> dict:
    """Rows ("examples") and distinct inputs, in all and per step count where the data has steps:
    a split drawn with repeats can have far more rows than inputs."""
    counts = {"examples": len(rows), "distinct_inputs": len({r["input"] for r in rows})}
    if rows and "steps" in rows[0]:
        inputs: dict[int, set] = {}
        for r in rows:
            inputs.setdefault(r["steps"], set()).add(r["input"])
        counts["steps"] = {str(k): v for k, v in sorted(Counter(r["steps"] for r in rows).items())}
        counts["distinct_inputs_by_steps"] = {str(k): len(inputs[k]) for k in sorted(inputs)}
    return counts


def mostly_repeats(rows: int, distinct: int) -> bool:
    return distinct * 2 < rows


def repeats_warning(split: str, counts: dict, generated: bool) -> str | None:
    """One line when fewer than half of a split's rows are distinct inputs, else None; `counts`
    as `input_counts` gives them. `generated`: a built-in task, whose splits are drawn."""
    rows, distinct = counts["examples"], counts["distinct_inputs"]
    if not mostly_repeats(rows, distinct):
        return None
    line = f"{split}: {rows:,} rows but only {distinct:,} distinct inputs ({1 - distinct / rows:.1%} repeats): "
    steps = counts.get("steps", {})
    worst = [(f"{k} step{'' if k == '1' else 's'}", f"{d:,} in {steps[k]:,} rows")
             for k, d in counts.get("distinct_inputs_by_steps", {}).items() if mostly_repeats(steps[k], d)]
    if generated:
        at = f" with {', '.join(f'{k} ({n})' for k, n in worst)}" if worst else " at these steps"
        return (line + f"the task has few inputs{at}; more rows only repeat them, so widen "
                f"data.{split}.min_steps/max_steps or lower data.{split}.size")
    where = f" ({'; '.join(f'with {k}: {n}' for k, n in worst)})" if worst else ""
    return (line + f"the data holds its inputs several times{where}, so they weigh more in training and count "
            f"more than once in accuracy; deduplicate the data unless that is meant")


def corpus_split(text: str, tokenizer: TextTokenizer) -> dict:
    ids = tokenizer.encode_batch([text])[0]
    return {"characters": len(text), "tokens": len(ids), "unknown_tokens": ids.count(tokenizer.unk_id)}


def percentiles(lengths: list[int]) -> dict:
    p50, p90, p99 = np.percentile(lengths, [50, 90, 99])
    return {"p50": int(p50), "p90": int(p90), "p99": int(p99), "max": int(max(lengths))}
