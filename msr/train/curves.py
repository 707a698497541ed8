"""curves.png: a run's training and validation loss, and its validation accuracy, against step,
drawn from history.jsonl (so a resumed or interrupted run shows what its history holds)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from msr.runs import file_mode

ACCURACY = ("val/accuracy", "val/token_accuracy")  # a task's exact match; a language model's next token


def read_history(folder: Path) -> list[dict]:
    path = Path(folder) / "history.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    return records


def series(history: list[dict], tag: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[tag]) for r in history if tag in r]
    return [s for s, _ in points], [v for _, v in points]


def write_curves(folder: Path) -> Path | None:
    """Draw folder/curves.png (atomically: a temporary file in the folder, then a rename);
    None when the history has no training loss yet."""
    history = read_history(folder)
    if not any("train/loss" in r for r in history):
        return None
    from matplotlib.figure import Figure  # Agg through the figure's own canvas: no pyplot, no display

    fig = Figure(figsize=(10, 4))
    # fixed margins: a constrained layout measures every label in an extra draw (half the time)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.92, wspace=0.2)
    loss, accuracy = fig.subplots(1, 2)
    for tag, style in (("train/loss", "-"), ("val/loss", "o-")):
        steps, values = series(history, tag)
        if steps:
            loss.plot(steps, values, style, markersize=3, label=tag)
    loss.set(xlabel="step", ylabel="loss", title="loss")
    loss.legend(loc="best")
    for tag in ACCURACY:
        steps, values = series(history, tag)
        if steps:
            accuracy.plot(steps, values, "o-", markersize=3, label=tag)
            accuracy.legend(loc="best")
    accuracy.set(xlabel="step", ylabel="accuracy", title="validation accuracy", ylim=(0, 1.02))
    path = Path(folder) / "curves.png"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".curves.", suffix=".png.tmp")
    os.fchmod(fd, file_mode())  # mkstemp's 0600 would hide the plot from the group
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
