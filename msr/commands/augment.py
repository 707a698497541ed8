"""`msr augment`: write an augmented copy of a data set, every new example with its provenance.

The recipe: load the data as the task makes it (no template, no scratchpad joined in), rewrite
each example of the chosen split with operations drawn by weight (seeded per example), label
fresh inputs with a teacher run and keep the confident ones, search for edits that fool the
teacher, drop whatever repeats an example already there or any input of the other splits, then
write all splits to RUN/data as JSONL and as an Arrow DatasetDict, and a table of the counts.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from msr.augment.operations import Context, rewrites
from msr.augment.output import Output, show, write
from msr.config import to_object
from msr.data import content_fingerprint, load_data
from msr.data.tasks import TASKS
from msr.errors import UserError
from msr.runs import RunDir

log = logging.getLogger("msr")


def run(dict_cfg, run: RunDir) -> dict:
    cfg = to_object(dict_cfg)
    options = cfg.augment
    data = load_data(cfg.data, cfg.paths)
    if data.corpus:
        raise UserError(f"data={cfg.data.name} is a text corpus; msr augment rewrites input -> target examples")
    if options.split not in data.splits:
        raise UserError(f"data={cfg.data.name} has no {options.split} split")
    source = data.splits[options.split]
    ctx = Context(cfg.task, cfg.data, sorted({w for r in source for w in r["input"].split()}))

    out = Output.of(data.splits, options.split, options.keep_original)
    for name, record, i in rewrites(source, options.weights(), ctx, options.copies, cfg.seed):
        out.add(name, record, i)
    report = {}
    if options.teacher:
        from msr.augment.teacher import teach  # loads a trained model: only when one is asked for

        report = teach(cfg, source, ctx, out)
    out.check_not_empty(options.split)

    splits = {split: (out.rows if split == options.split else rows) for split, rows in data.splits.items()}
    task = asdict(cfg.data) if cfg.data.name in TASKS else None  # free text's labels follow no recorded rule
    folder = write(run, splits, task)
    counts = {op: dict(c) for op, c in out.counts.items()}
    show(cfg.data.name, options.split, len(source), len(out.rows), counts)
    log.info("wrote %s (train on it with: data=files data.path=%s)", folder, folder)
    return {"augment": {"split": options.split, "source_examples": len(source), "examples": len(out.rows),
                        "operations": counts, **report},
            "sizes": {split: len(rows) for split, rows in splits.items()},
            "data_fingerprint": content_fingerprint(splits)}
