"""`msr reproduce RUN [--tolerance T]`: rerun a run from its folder and compare every metric.

The run's saved overrides are composed again and the result must equal its saved
`.hydra/config.yaml` (otherwise conf/ changed since, and the rerun would not be the same
experiment); then the same command runs in a fresh process into outputs/reproduce/<date>/<time>/
and each number of the two metrics.json files is compared. Exit code 1 when any differs by
more than the tolerance (default 0: exact, as same config and seed give on the CPU).

A run that was resumed (resumes.jsonl) is replayed segment by segment: trained to the step each
resume went on from (trainer.stop_at pauses there, leaving trainer.max_steps and so the schedule
as they were), then resumed with that resume's overrides. Ctrl-C stops the rerun as it would stop
the run itself, and the rerun's record says it was interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from msr.errors import UserError
from msr.runs import claim_folder, read_resumes, run_folder, saved_config, saved_overrides

COMPARED = ("metrics", "accuracy_by_steps", "steps", "best_step", "parameters", "data_fingerprint", "init", "augment",
            "sizes")


def reproduce(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="msr reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder (or one of its checkpoint folders)")
    parser.add_argument("--tolerance", type=float, default=0.0, help="largest difference counted as equal")
    args = parser.parse_args(argv)
    args.run = run_folder(args.run)
    original = read_metrics(args.run)
    command = original["command"]
    overrides = check_config(args.run, command)
    [placed] = claim_folder("reproduce", [], multirun=False)  # a folder of its own, even in the same second
    target = Path(placed.partition("=")[2])
    for arguments in segments(command, overrides, read_resumes(args.run), target):
        print(f"rerunning: msr {' '.join(arguments)}", file=sys.stderr)
        code = rerun(arguments)
        if code == 130:
            print(f"msr: reproduce interrupted; the rerun's folder is {target}", file=sys.stderr)
            return 130
        if code != 0:
            raise UserError(f"the rerun failed (exit code {code}); its folder is {target}")
    rows = compare(results(original), results(read_metrics(target)), args.tolerance)
    show(rows, args.run, target)
    return 1 if any(not equal for _, _, _, equal in rows) else 0


def segments(command: str, overrides: list[str], resumes: list[dict], target: Path) -> list[list[str]]:
    """The command lines that redo the run: its start, then each resume from the step it went on from.
    A resume's overrides are all it added to the run's own, so one that went on from no later a step
    than the resume before it undoes that one: only the last of them is replayed."""
    kept: list[dict] = []
    for resume in resumes:
        while kept and kept[-1]["step"] >= resume["step"]:
            kept.pop()
        kept.append(resume)
    starts = [r for r in kept if r["step"] > 0]  # a resume before the first checkpoint began afresh
    first = overrides + [o for r in kept if r["step"] == 0 for o in r["overrides"]]
    pauses = [f"trainer.stop_at={r['step']}" for r in starts] + ["trainer.stop_at=0"]
    lines = [[command, *first, *([pauses[0]] if starts else []), f"hydra.run.dir={target}"]]
    for resume, pause in zip(starts, pauses[1:]):
        lines.append([command, f"resume={target}", *resume["overrides"], pause])
    return lines


def rerun(arguments: list[str]) -> int:
    """Run msr in a child process of its own session, so that a terminal's Ctrl-C reaches it
    once, from here: it then stops as a run does (checkpoint, record), and so does this."""
    child = subprocess.Popen([sys.executable, "-m", "msr.cli", *arguments], start_new_session=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    # Ctrl-C raises here even where this process was started with SIGINT ignored (Python then
    # installs no handler of its own), or the child in its own session would never hear of it
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                child.send_signal(signal.SIGINT)  # a second Ctrl-C is passed on too: the child stops at once
    finally:
        signal.signal(signal.SIGINT, previous)


def read_metrics(folder: Path) -> dict:
    path = folder / "metrics.json"
    if not path.is_file():
        raise UserError(f"{folder} is not a run folder (it has no metrics.json)")
    record = json.loads(path.read_text())
    if record.get("status") != "completed":
        raise UserError(f"{folder} did not complete (status {record.get('status')}); there is nothing to compare")
    return record


def check_config(folder: Path, command: str) -> list[str]:
    """The run's overrides, once they are shown to compose to the config it saved."""
    from omegaconf import OmegaConf

    from msr import config
    from msr.conf_dir import CONF_DIR
    from msr.overrides import compose_config

    config.register()
    overrides = saved_overrides(folder)
    saved = OmegaConf.to_container(saved_config(folder))
    again = OmegaConf.to_container(compose_config(CONF_DIR, command, overrides))
    before, now = flatten(saved), flatten(again)
    differing = [key for key in sorted(before) if key != "resume" and before[key] != now.get(key, MISSING)]
    if differing:
        raise UserError(f"the config that {folder}'s overrides compose to today differs from the one it saved "
                        f"({', '.join(differing[:5])}): conf/ or msr changed since the run")
    added = sorted(set(now) - set(before))  # keys msr gained since: no override of the run can set them
    if added:
        print(f"keys msr added since the run, at their defaults: {', '.join(added)}", file=sys.stderr)
    return overrides


MISSING = object()


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}"""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def results(record: dict) -> dict:
    """The numbers a rerun must repeat (not wall time or speed, which a rerun never repeats)."""
    return flatten({key: record[key] for key in COMPARED if key in record})


def compare(before: dict, after: dict, tolerance: float) -> list[tuple[str, object, object, bool]]:
    rows = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            rows.append((key, a, b, abs(a - b) <= tolerance))
        else:
            rows.append((key, a, b, a == b))
    return rows


def show(rows, original: Path, rerun: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("metric", "original", "rerun", "", title=f"{original}  vs  {rerun}")
    for key, a, b, equal in rows:
        verdict = "equal" if equal else "[red]differs[/]" + (
            f" by {abs(a - b):.3g}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else "")
        table.add_row(key, repr(a), repr(b), verdict)
    Console().print(table)
    differing = sum(not equal for *_, equal in rows)
    Console().print(f"{len(rows) - differing} of {len(rows)} equal" + (f", {differing} differ" if differing else ""))
