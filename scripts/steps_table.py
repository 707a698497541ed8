"""Test accuracy by reasoning steps: train on few steps, test on more, for each task family and model.

For every family x model x scratchpad in the grid, runs one `msr train` job that trains on
--train-steps (default 1-4), selects the checkpoint on a val split over the same steps (model
selection never sees the longer steps), and tests on --test-steps (default 1-8). Each job is

    python -m msr.cli train data=<family> <MODEL_OVERRIDES[model]> data.scratchpad=<s>
        data.{train,val}.min_steps=A data.{train,val}.max_steps=B
        data.test.min_steps=C data.test.max_steps=D
        hydra.run.dir=<out>/<family>-<model>-<plain|scratchpad> <extra overrides>

MODEL_OVERRIDES below holds each model's own overrides (its config group and the training
settings that suit it); edit it to change a model's setup or add one (any key `msr train --help`
lists). Extra overrides after `--` go to every job and come last, so they win over it.

Jobs run as --parallel subprocesses; each one's output goes to <out>/<name>.log. A job whose
folder already holds a completed run is skipped, so a re-run fills in what failed or is missing
(a folder holding a failed or interrupted run is deleted and run again). Then the table is read
from each folder's metrics.json, printed as GitHub markdown and written to <out>/table.md:
one row per job, test accuracy per number of steps, "all" = the whole test split, train steps =
optimizer steps taken, wall s = the run's wall time. Exits 1 if any job failed.

Run:  python scripts/steps_table.py [--families arith,kinship] [--parallel 4] [-- device=cuda ...]
      python scripts/steps_table.py --table-only      (only re-render the table from --out)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

# Each model's overrides, placed right after data=<family> in its jobs.
MODEL_OVERRIDES: dict[str, list[str]] = {
    "lstm": ["model=lstm"],
    "transformer": [
        "model=transformer",
        "optimizer.lr=1e-3",
        "optimizer.weight_decay=0.1",
        "trainer.max_steps=10000",
        "trainer.eval_every=1000",
        "model.max_len=512",  # listops with a scratchpad reaches 271 tokens at 8 steps; the default is 256
    ],
}

MISSING = "–"


def step_range(text: str) -> tuple[int, int]:
    """'1-4' -> (1, 4); argparse type for --train-steps / --test-steps."""
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise argparse.ArgumentTypeError(f"expected A-B with 1 <= A <= B, got {text!r}")
    return int(match[1]), int(match[2])


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_bool(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"--scratchpad takes true and/or false, got {text!r}")
    return text.lower() == "true"


def job_name(family: str, model: str, scratchpad: bool) -> str:
    return f"{family}-{model}-{'scratchpad' if scratchpad else 'plain'}"


def grid(args) -> list[tuple[str, str, bool]]:
    """(family, model, scratchpad) in table order: families x models x scratchpad."""
    return [(f, m, s) for f in args.families for m in args.models for s in args.scratchpad]


def train_command(overrides: list[str], train_steps, test_steps, run_dir: Path, extra: list[str]) -> list[str]:
    """One `msr train` job: its own overrides, then the step ranges, its folder and the extra overrides
    (last, so they win). Shared with length_study.py."""
    (a, b), (c, d) = train_steps, test_steps
    return [
        sys.executable, "-m", "msr.cli", "train",
        *overrides,
        f"data.train.min_steps={a}", f"data.train.max_steps={b}",
        f"data.val.min_steps={a}", f"data.val.max_steps={b}",  # val = the training range: selection never sees longer steps
        f"data.test.min_steps={c}", f"data.test.max_steps={d}",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def job_command(family: str, model: str, scratchpad: bool, args) -> list[str]:
    overrides = [f"data={family}", *MODEL_OVERRIDES[model], f"data.scratchpad={str(scratchpad).lower()}"]
    return train_command(overrides, args.train_steps, args.test_steps,
                         args.out / job_name(family, model, scratchpad), args.extra)


def read_metrics(run_dir: Path) -> dict:
    """The run's metrics.json, or {} if there is none (or it cannot be read)."""
    try:
        return json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def test_accuracy(metrics: dict) -> float | None:
    return (metrics.get("metrics") or {}).get("test/accuracy")


def fmt(value: float | None, spec: str = ".2f") -> str:
    return MISSING if value is None else format(value, spec)


def run_job(command: list[str], run_dir: Path) -> tuple[int, float]:
    """Run one msr job; its stdout + stderr go to <run_dir>.log. Returns (exit code, wall seconds)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    log = run_dir.parent / f"{run_dir.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"$ {shlex.join(command)}\n\n{proc.stdout}{proc.stderr}")
    return proc.returncode, seconds


def needs_run(name: str, run_dir: Path) -> bool:
    """False if run_dir holds a completed run; else clears what a failed or unfinished one left."""
    if read_metrics(run_dir).get("status") == "completed":
        print(f"skip {name}: completed run in {run_dir}", flush=True)
        return False
    if run_dir.exists():  # a failed, interrupted or unfinished run: msr would refuse the folder
        shutil.rmtree(run_dir)
    return True


def run_grid(args) -> bool:
    """Run every job of the grid that has no completed run yet; True if all of them succeeded."""
    names = [(job_name(*cell), cell) for cell in grid(args)]
    todo = [(name, args.out / name, job_command(*cell, args)) for name, cell in names if needs_run(name, args.out / name)]
    return run_jobs(todo, args.parallel)


def run_jobs(todo: list[tuple[str, Path, list[str]]], parallel: int) -> bool:
    """Run (name, run folder, command) jobs, `parallel` at a time; True if all of them succeeded."""
    ok = True
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=parallel)
    try:
        futures = {pool.submit(run_job, command, run_dir): (name, run_dir) for name, run_dir, command in todo}
        for future in concurrent.futures.as_completed(futures):
            name, run_dir = futures[future]
            code, seconds = future.result()
            ok &= code == 0
            accuracy = fmt(test_accuracy(read_metrics(run_dir)), ".4f")
            print(f"{'done' if code == 0 else 'FAIL'} {name}: exit {code}, {seconds:.0f} s, "
                  f"test accuracy {accuracy}" + ("" if code == 0 else f" (see {run_dir}.log)"), flush=True)
    except KeyboardInterrupt:  # the running jobs got the Ctrl-C too; start no more
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return ok


def table(args) -> str:
    (a, b), (c, d) = args.train_steps, args.test_steps
    steps = [str(k) for k in range(c, d + 1)]
    header = ["task", "model", "scratchpad", *steps, "all", "train steps", "wall s"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] * 3 + ["---:"] * (len(header) - 3)) + "|"]
    for family, model, scratchpad in grid(args):
        metrics = read_metrics(args.out / job_name(family, model, scratchpad))
        by_steps = metrics.get("accuracy_by_steps") or {}
        row = [family, model, "yes" if scratchpad else "no",
               *(fmt(by_steps.get(k)) for k in steps),
               fmt(test_accuracy(metrics)),
               fmt(metrics.get("steps") or None, "d"),
               fmt(metrics.get("wall_seconds"), ".0f")]
        lines.append("| " + " | ".join(row) + " |")
    unseen = [k for k in range(c, d + 1) if not a <= k <= b]
    note = f"Steps {a}–{b} were seen in training"
    if unseen:
        note += f"; {unseen[0]}–{unseen[-1]} were not" if len(unseen) > 1 else f"; {unseen[0]} was not"
    return "\n".join(lines) + "\n\n" + note + ".\n"


def main() -> int:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                usage="%(prog)s [options] [-- extra hydra overrides for every job]")
    p.add_argument("--families", type=comma_list, default="arith,chain,listops,logic,kinship",
                   help="comma list of data= options (default: %(default)s)")
    p.add_argument("--models", type=comma_list, default="lstm,transformer",
                   help=f"comma list of {', '.join(MODEL_OVERRIDES)} (default: %(default)s)")
    p.add_argument("--scratchpad", type=lambda s: [parse_bool(x) for x in comma_list(s)], default="false,true",
                   help="comma list of false/true (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("outputs/steps_table"),
                   help="folder for the run folders, their logs and table.md (default: %(default)s)")
    p.add_argument("--parallel", type=int, default=1, help="jobs at a time (default: %(default)s)")
    p.add_argument("--train-steps", type=step_range, default="1-4",
                   help="steps in train and val, A-B (default: %(default)s)")
    p.add_argument("--test-steps", type=step_range, default="1-8", help="steps in test, A-B (default: %(default)s)")
    p.add_argument("--table-only", action="store_true", help="run nothing; render the table from --out")
    args = p.parse_args(own)
    args.extra = extra
    if bad := [m for m in args.models if m not in MODEL_OVERRIDES]:
        p.error(f"unknown model(s) {', '.join(bad)}: add them to MODEL_OVERRIDES ({', '.join(MODEL_OVERRIDES)})")
    if args.parallel < 1:
        p.error("--parallel must be >= 1")

    print("$ " + shlex.join(["python", *sys.argv]), flush=True)
    ok = True if args.table_only else run_grid(args)
    text = table(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(text)
    print("\n" + text, end="")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
