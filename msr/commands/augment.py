"""`msr augment`: write an augmented copy of a data set, every new example with its provenance.

The recipe: load the data as the task makes it (no template, no scratchpad joined in), rewrite
each example of the chosen split with operations drawn by weight (seeded per example), label
fresh inputs with a teacher run and keep the confident ones, search for edits that fool the
teacher, drop whatever repeats an example already there or any input of the other splits, then
write all splits to RUN/data as JSONL and as an Arrow DatasetDict, and a table of the counts.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections import Counter
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from msr.augment import TASK_RECORD
from msr.augment.operations import OPERATIONS, Context, label_preserving, supported
from msr.config import to_object
from msr.data import content_fingerprint, load_data, quiet_datasets
from msr.data.tasks import TASKS
from msr.errors import UserError
from msr.runs import RunDir, atomic_write

log = logging.getLogger("msr")

COLUMNS = ("input", "target", "steps", "scratchpad", "source", "operation", "edits", "confidence", "teacher_answer")


class Output:
    """The augmented split as it grows, with what was refused and why."""

    def __init__(self, rows: list[dict], inputs: set[str], held_out: dict[str, set[str]]):
        self.rows = rows  # the originals kept, if any; then what is added
        self.inputs = inputs  # every input the split held or holds now: a new example is always new
        self.held_out = held_out  # split -> its inputs, which must never be produced
        self.counts: dict[str, Counter] = {}

    def add(self, operation: str, record: dict | None, source: int | None, **provenance) -> bool:
        """Keep `record` unless it is missing, repeats an example, or is an input of another split."""
        if record is None:
            return self.count(operation, "not applicable")
        clash = next((split for split, inputs in self.held_out.items() if record["input"] in inputs), None)
        if clash is not None:
            return self.count(operation, f"in {clash}")
        if record["input"] in self.inputs:
            return self.count(operation, "duplicate")
        self.count(operation, "kept")
        self.inputs.add(record["input"])
        self.rows.append({**record, "source": source, "operation": operation, **provenance})
        return True

    def count(self, operation: str, outcome: str) -> bool:
        self.counts.setdefault(operation, Counter()).update(["tried", outcome])
        return outcome == "kept"


def run(dict_cfg, run: RunDir) -> dict:
    cfg = to_object(dict_cfg)
    options = cfg.augment
    data = load_data(cfg.data, cfg.paths)
    if data.corpus:
        raise UserError(f"data={cfg.data.name} is a text corpus; msr augment rewrites input -> target examples")
    if options.split not in data.splits:
        raise UserError(f"data={cfg.data.name} has no {options.split} split")
    source = data.splits[options.split]
    task = cfg.task
    chosen = options.weights()
    names = list(chosen) or supported(task)
    weights = [chosen.get(name, 1.0) for name in names]
    ctx = Context(task, cfg.data, sorted({w for r in source for w in r["input"].split()}))

    originals = [{**r, "source": i, "operation": "original"} for i, r in enumerate(source)]
    out = Output(originals if options.keep_original else [], {r["input"] for r in source},
                 {split: {r["input"] for r in rows} for split, rows in data.splits.items() if split != options.split})
    for i, record in enumerate(source):
        for copy in range(options.copies):
            rng = random.Random(f"{cfg.seed}-{i}-{copy}")  # seeded per example: any one can be redrawn alone
            name = rng.choices(names, weights)[0]
            out.add(name, OPERATIONS[name].apply(record, rng, ctx), i)

    report = {}
    if options.teacher:
        from msr.augment.teacher import Teacher, adversarial_search
        from msr.device import resolve_device

        teacher = Teacher(options.teacher, asdict(cfg.data), resolve_device(cfg.device.type))
        if options.pseudo_labels:
            report["pseudo_labels"] = pseudo_label(teacher, cfg, out)
        if options.adversarial:
            found, report["adversarial"] = adversarial_search(teacher, source, label_preserving(task), ctx,
                                                             options.adversarial, options.edits, cfg.seed)
            for i, flips in found.items():
                for record, applied, answer in flips:  # the first that is new to the data set
                    if out.add("adversarial", record, i, teacher_answer=answer, edits=applied):
                        break

    if not out.rows:  # a folder with an empty split trains on nothing; say why instead
        tried = "; ".join(f"{op}: " + ", ".join(f"{n} {k}" for k, n in c.items() if k != "tried")
                          for op, c in out.counts.items()) or "no new example was made"
        raise UserError(f"the augmented {options.split} split would be empty ({tried}); nothing was written: keep "
                        f"the originals (augment.keep_original=true) or ask for more (augment.copies, "
                        f"augment.pseudo_labels with a lower augment.confidence, augment.adversarial)")
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


def pseudo_label(teacher, cfg, out: Output) -> dict:
    """Fresh inputs from the task's generator, labelled by the teacher; the confident ones kept.
    The generator's own answers are kept aside only to say how often the teacher was right."""
    split = getattr(cfg.data, cfg.augment.split)
    fresh = []
    for i in range(cfg.augment.pseudo_labels):
        rng = random.Random(f"unlabeled-{cfg.seed}-{i}")
        fresh.append(TASKS[cfg.data.name].sample(rng, rng.randint(split.min_steps, split.max_steps), cfg.data))
    answers = teacher.answer([r["input"] for r in fresh])
    confident = kept = right = 0
    for record, answer in zip(fresh, answers):
        if answer.confidence < cfg.augment.confidence:
            out.count("pseudo_label", "below confidence")
            continue
        confident += 1
        labelled = {"input": record["input"], "target": answer.text, "steps": record["steps"]}
        if answer.working is not None:  # the teacher's own working, if it writes one
            labelled["scratchpad"] = answer.working
        if out.add("pseudo_label", labelled, None, confidence=round(answer.confidence, 4)):
            kept += 1
            right += answer.text == record["target"]
    log.info("pseudo-labels: %d of %d fresh inputs labelled with confidence >= %g, %d of them new; %d of those "
             "answers are right (checked with the task's solver)", confident, len(fresh), cfg.augment.confidence,
             kept, right)
    return {"inputs": len(fresh), "confident": confident, "kept": kept, "right": right}


def write(run: RunDir, splits: dict[str, list[dict]], task: dict | None = None):
    """RUN/data/<split>.jsonl and the same as an Arrow DatasetDict, written whole or not at all;
    with `task` (the built-in task's data config), TASK_RECORD too."""
    from datasets import Dataset, DatasetDict

    quiet_datasets()
    columns = [c for c in COLUMNS if any(c in r for rows in splits.values() for r in rows)]
    table = {split: [{c: r.get(c) for c in columns} for r in rows] for split, rows in splits.items()}
    folder, tmp = run.path / "data", run.path / ".data.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    DatasetDict({split: Dataset.from_list(rows) for split, rows in table.items()}).save_to_disk(str(tmp))
    for split, rows in table.items():
        atomic_write(tmp / f"{split}.jsonl", lambda f, rows=rows: f.writelines(json.dumps(r) + "\n" for r in rows))
    if task is not None:
        record = json.dumps({"data": task}, indent=2, default=lambda v: getattr(v, "value", str(v)))
        atomic_write(tmp / TASK_RECORD, lambda f: f.write(record + "\n"))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def show(name: str, split: str, sources: int, total: int, counts: dict) -> None:
    reasons = sorted({k for c in counts.values() for k in c} - {"tried", "kept"})
    table = Table("operation", "family", "tried", "kept", *reasons,
                  title=f"{name} {split}: {sources:,} examples in, {total:,} out")
    for op, c in counts.items():
        family = OPERATIONS[op].family if op in OPERATIONS else "teacher"
        table.add_row(op, family, f"{c['tried']:,}", f"{c.get('kept', 0):,}", *(f"{c.get(r, 0):,}" for r in reasons))
    Console(width=max(Console().width, 120)).print(table)  # a log file is not 80 columns wide
