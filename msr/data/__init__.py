"""The composed data set, whatever its source: `load_data(cfg.data, cfg.paths)`.

Built-in tasks are generated (and cached); files and hub sets are read with `datasets`. Either
way each split becomes a list of records {input, target[, steps][, scratchpad]}, presented as
the config asks: the template wraps the input, and with `data.scratchpad=true` the target
becomes "<intermediate steps> #### <answer>". A text corpus gives one {text} record per split.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from msr.errors import UserError

log = logging.getLogger("msr")

ANSWER_MARK = "####"  # between the scratchpad and the answer, as in GSM8K's solutions


def answer_of(text: str) -> str:
    """The final answer in a target or a prediction: what follows the last ####, if any."""
    return " ".join(text.rpartition(ANSWER_MARK)[2].split())


@dataclass
class DataSplits:
    name: str
    splits: dict[str, list[dict]]  # as the model sees them: template applied, scratchpad joined in
    corpus: bool = False
    overlap: dict[str, int] = field(default_factory=dict)  # "val/train": inputs found in both
    raw: dict[str, list[dict]] = field(default_factory=dict)  # as the task or the files give them
    excluded: int = 0  # examples left out because they were in load_data's `exclude`


def quiet_datasets() -> None:
    """`datasets` draws a progress bar for every save and load; msr's own log says what happened."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its read errors reach the user as ours


def load_data(cfg, paths, exclude: set[str] | None = None, split: str = "test") -> DataSplits:
    """Every split of the data; with `exclude` (inputs a model has seen), only the held-out
    `split`, none of whose inputs is in `exclude`: a task draws it anew around them (exactly the
    split it always draws when none of them would have been drawn), files leave them out."""
    from msr.config import MixtureConfig, TaskConfig

    quiet_datasets()

    cache = Path(paths.cache).expanduser()
    excluded = 0
    if isinstance(cfg, MixtureConfig):
        from msr.data.mixture import load_mixture

        raw, excluded = load_mixture(cfg, cache, exclude, split)
    elif isinstance(cfg, TaskConfig) and exclude is not None:
        from msr.data.splits import draw

        drawn = draw(cfg, exclude, until=split)
        raw, excluded = {split: drawn.splits[split]}, drawn.excluded
    elif isinstance(cfg, TaskConfig):
        from msr.data.generated import load_generated

        raw = {name: table.to_list() for name, table in load_generated(cfg, cache).items()}
    else:
        from msr.data.files import load_files

        raw = load_files(cfg, cache)
    if cfg.folds and "train" in raw:  # not for a task's held-out split drawn anew around `exclude`
        from msr.data.folds import fold_splits

        raw = fold_splits(raw, cfg)
    files = not isinstance(cfg, (MixtureConfig, TaskConfig))  # filtered here, after folding: val may be a fold
    if files and exclude is not None and not getattr(cfg, "is_corpus", False) and split in raw:
        kept = [r for r in raw[split] if r["input"] not in exclude]
        raw, excluded = {split: kept}, len(raw[split]) - len(kept)
        if not kept:
            raise UserError(f"data {cfg.name}: every {split} example is an input the evaluated run(s) "
                            f"trained on; evaluate on other data")
    if getattr(cfg, "is_corpus", False):
        return DataSplits(cfg.name, raw, corpus=True, raw=raw)
    data = DataSplits(cfg.name, {name: present(rows, cfg) for name, rows in raw.items()}, raw=raw, excluded=excluded)
    data.overlap = overlap(data.splits)
    for pair, count in data.overlap.items():
        if count:
            log.warning("data %s: %d %s inputs also appear in %s", cfg.name, count, *pair.split("/"))
    return data


def corpus_texts(dataset: DataSplits) -> dict[str, str]:
    """Each split as one text for language modelling: a corpus as it is; a task's inputs (no
    answers), each closed by <eos>."""
    from msr.data.tokenizer import EOS

    if dataset.corpus:
        return {split: rows[0]["text"] for split, rows in dataset.splits.items()}
    return {split: "".join(r["input"] + EOS for r in rows) for split, rows in dataset.splits.items()}


def content_fingerprint(splits: dict[str, list[dict]]) -> str:
    """A hash of every example as the model sees it: equal fingerprints, equal data."""
    digest = hashlib.sha256()
    for split in sorted(splits):
        digest.update(split.encode())
        for row in splits[split]:
            digest.update(json.dumps(row, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def present(rows: list[dict], cfg) -> list[dict]:
    if cfg.scratchpad and rows and "scratchpad" not in rows[0]:
        raise UserError(f"data.scratchpad=true, but data {cfg.name} has no scratchpad "
                        f"(files: name its field with data.scratchpad_field=)")
    lacking = sum(r.get("scratchpad") is None for r in rows) if cfg.scratchpad else 0
    if lacking:
        raise UserError(f"data.scratchpad=true, but {lacking} examples of data {cfg.name} have none (e.g. "
                        f"pseudo-labels from a teacher that writes no scratchpad); train without data.scratchpad")
    templated = cfg.template != "{input}"
    out = []
    for r in rows:
        r = dict(r)
        if templated:
            r["input"] = cfg.template.format(input=r["input"])
        if cfg.scratchpad:
            r["target"] = f"{r['scratchpad']} {ANSWER_MARK} {r['target']}"
        out.append(r)
    return out


def overlap(splits: dict[str, list[dict]]) -> dict[str, int]:
    """How many inputs of each held-out split also occur in an earlier split."""
    inputs = {split: {r["input"] for r in rows} for split, rows in splits.items()}
    pairs = [("val", "train"), ("test", "train"), ("test", "val")]
    return {f"{a}/{b}": len(inputs[a] & inputs[b]) for a, b in pairs if a in inputs and b in inputs}
