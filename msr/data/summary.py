"""What a data set looks like, as plain numbers: sizes, steps, lengths, labels, overlap."""

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
        "examples": len(rows),
        "input_tokens": percentiles([len(ids) for ids in inputs]),
        "target_tokens": percentiles([len(ids) for ids in targets]),
        "unknown_tokens": sum(ids.count(tokenizer.unk_id) for ids in (*inputs, *targets)),
    }
    if "steps" in rows[0]:
        summary["steps"] = {str(k): v for k, v in sorted(Counter(r["steps"] for r in rows).items())}
    if labels:
        summary["labels"] = dict(Counter(r["target"] for r in rows).most_common())
    return summary


def corpus_split(text: str, tokenizer: TextTokenizer) -> dict:
    ids = tokenizer.encode_batch([text])[0]
    return {"characters": len(text), "tokens": len(ids), "unknown_tokens": ids.count(tokenizer.unk_id)}


def percentiles(lengths: list[int]) -> dict:
    p50, p90, p99 = np.percentile(lengths, [50, 90, 99])
    return {"p50": int(p50), "p90": int(p90), "p99": int(p99), "max": int(max(lengths))}
