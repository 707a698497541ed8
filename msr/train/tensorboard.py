"""A training run's scalar log: every record goes to history.jsonl (through RunDir.log_history)
and, with logger.tensorboard, to a TensorBoard event file in the run folder, so the two always
hold the same tags, steps and values. At the end the run's hyperparameters and final metrics
join its own event file (TensorBoard's HParams tab), and curves.png is drawn from history.jsonl.

TensorBoard is imported only when a run opens its writer: `msr train --help` never pays for it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from msr.runs import RunDir

log = logging.getLogger("msr")

FINAL = "final/"  # the tags of metrics.json's metrics, logged once at the end: HParams compares runs by them


class RunLogger:
    """Callable as `log_history(record)`: {"step": N, tag: value, ...} to history.jsonl and the event file."""

    def __init__(self, run: RunDir, tensorboard: bool):
        self.run, self.tensorboard = run, tensorboard
        self.writer = None

    def open(self, resumed_from: int | None = None) -> None:
        """Open the event file. Where the folder has one already (a resume from step
        `resumed_from`, or a run started again from nothing) the new file purges what the earlier
        ones logged after that step, as history.jsonl drops those records, so no step shows twice."""
        if not self.tensorboard or not self.run.writes:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # a dependency of msr's, so a broken install: the run is still worth having
            log.warning("tensorboard is not installed (pip install tensorboard): this run writes no event file")
            return

        earlier = event_files(self.run.path)
        if earlier:
            wait_for_a_later_name(earlier)
        purge = (resumed_from or 0) + 1 if earlier else None
        # flush_secs: a run followed live shows its scalars within seconds; the writes stay on a thread
        self.writer = SummaryWriter(str(self.run.path), purge_step=purge, flush_secs=10)

    def __call__(self, record: dict) -> None:
        self.run.log_history(record)
        if self.writer is not None:
            step = record["step"]
            for tag, value in record.items():
                if tag != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(tag, value, step)

    def finish(self, steps: int, metrics: dict, config: dict) -> None:
        """The final metrics (as `final/<key>` at the last step) and, beside them in the run's own
        event file, the hyperparameters: the flattened config, keyed by dotted names."""
        final = {FINAL + k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        self({"step": steps, **final})
        if self.writer is not None:
            from torch.utils.tensorboard.summary import hparams

            # add_hparams would write these into a sub-run of their own, apart from the scalars
            for summary in hparams(hparam_values(config), final):
                self.writer.file_writer.add_summary(summary)

    def close(self) -> None:
        """Flush the event file and draw curves.png, whatever ended the run."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if not self.run.writes:
            return
        from msr.train.curves import write_curves

        try:
            write_curves(self.run.path)
        except Exception as err:  # a plot is never worth losing the run's result over
            log.warning("curves.png was not written: %s", err)

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def hparam_values(config: dict, prefix: str = "") -> dict:
    """The config flattened to {"optimizer.lr": 0.001, ...} with the value types HParams takes:
    lists, None and empty values become text ("[1, 2]", "null", "{}", '""')."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(hparam_values(value, name + "."))
        elif isinstance(value, (bool, int, float)) and not (isinstance(value, float) and math.isnan(value)):
            flat[name] = value
        elif isinstance(value, str) and value:
            flat[name] = value
        else:
            flat[name] = json.dumps(value)
    return flat


def event_files(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob("events.out.tfevents.*"))


def wait_for_a_later_name(earlier: list[Path]) -> None:
    """TensorBoard reads a folder's event files in name order, and a name starts with the second
    it was opened (then host, pid, a counter): a file opened in the same second as an earlier one
    waits for the next, so that it (and its purge) comes after."""
    opened = [int(p.name.split(".")[3]) for p in earlier if p.name.split(".")[3].isdigit()]
    latest = max(opened, default=0)
    while int(time.time()) <= latest:
        time.sleep(0.05)
