"""The augmented split as it grows (what is kept, what is refused and why), the folder it is
written to, and the table of counts `msr augment` prints."""

from __future__ import annotations

import json
import shutil
from collections import Counter

from rich.console import Console
from rich.table import Table

from msr.augment import TASK_RECORD
from msr.augment.operations import OPERATIONS
from msr.data import quiet_datasets
from msr.errors import UserError
from msr.runs import RunDir, atomic_write

COLUMNS = ("input", "target", "steps", "scratchpad", "source", "operation", "edits", "confidence", "teacher_answer")


class Output:
    """The augmented split as it grows, with what was refused and why."""

    def __init__(self, rows: list[dict], inputs: set[str], held_out: dict[str, set[str]]):
        self.rows = rows  # the originals kept, if any; then what is added
        self.inputs = inputs  # every input the split held or holds now: a new example is always new
        self.held_out = held_out  # split -> its inputs, which must never be produced
        self.counts: dict[str, Counter] = {}

    @classmethod
    def of(cls, splits: dict[str, list[dict]], split: str, keep_original: bool) -> Output:
        """An augmented copy of `splits[split]` that starts with its originals or with nothing."""
        source = splits[split]
        originals = [{**r, "source": i, "operation": "original"} for i, r in enumerate(source)]
        return cls(originals if keep_original else [], {r["input"] for r in source},
                   {name: {r["input"] for r in rows} for name, rows in splits.items() if name != split})

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

    def check_not_empty(self, split: str) -> None:
        """A folder with an empty split trains on nothing; say why instead of writing it."""
        if self.rows:
            return
        tried = "; ".join(f"{op}: " + ", ".join(f"{n} {k}" for k, n in c.items() if k != "tried")
                          for op, c in self.counts.items()) or "no new example was made"
        raise UserError(f"the augmented {split} split would be empty ({tried}); nothing was written: keep "
                        f"the originals (augment.keep_original=true) or ask for more (augment.copies, "
                        f"augment.pseudo_labels with a lower augment.confidence, augment.adversarial)")


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
