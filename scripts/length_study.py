"""Length generalisation: each position option and the attention RNNs, trained on 1-4 steps, tested on 1-12.

For every task x variant x seed, runs one `msr train` job that trains (and selects its checkpoint
on a val split) over --train-steps and tests on --test-steps, then tabulates test accuracy by
steps with a Wilson 95% interval per cell. Each job is

    python -m msr.cli train <TASKS[task]> <VARIANTS[variant]> seed=S data.seed=1234+S
        data.{train,val}.min_steps=A data.{train,val}.max_steps=B
        data.test.min_steps=C data.test.max_steps=D data.test.size=<--test-size>
        trainer.max_steps=<--steps> trainer.eval_every=<--steps/10>
        hydra.run.dir=<out>/<task>-<variant>-s<S> <extra overrides after -->

The data seed moves with the model seed, so the seeds' test examples are independent draws (of
a small pool where one is: arith has 300 one-step expressions) and a cell's interval is the Wilson interval of the answers pooled over seeds (hits and n summed,
read from each run's predictions.jsonl). The Transformer variants share steps_table.py's
Transformer settings (AdamW lr 1e-3, weight decay 0.1, max_len 512); --steps is every run's
budget. Jobs, skipping of completed runs and per-job logs are steps_table.py's (run_jobs).
The table goes to stdout and <out>/table.md; exits 1 if any job failed.

CPU sizing. Measured here (2 cores shared with other jobs, load average 10-22): 300 steps of
arith took 1,186 s for tf-rope+random (890 s training, 247 s decoding the 1,173 wrong test
answers) and 847 s for lstm-dot, i.e. ~3 s a step: the load, not the models (README: 20,000
Transformer steps in 570 s on a free 2-core machine, ~0.03 s a step). From that figure, a
10,000-step run takes ~5-6 minutes with its test, so the default study (2 tasks x 10 variants x
3 seeds = 60 runs, 42 of them Transformers) is ~6-7 hours on 2 free cores, the 6 lstm-additive
runs ~20 minutes each (additive scores train ~7.6x slower than the plain LSTM: bench_options.py):
more than a 180-minute session (~35 Transformer runs). What fits on 2 cores: --seeds 0 (20 runs,
~2 hours). Measured 2026-12-07 with 2-4 one-thread runs sharing the 2 cores: a 10,000-step arith
Transformer run with its test took 1,025-1,366 s, kinship ~2,600 s, chain (batch 64, ~100-token
rows) over an hour. Fewer steps do not help on plain arith, learned only after ~8,000 steps (with
index hints: ~2,000). The 3-seed study wants a GPU (`-- device=cuda`) or a larger machine with
--jobs (each job gets cores/jobs threads).

Run:  python scripts/length_study.py [--tasks arith,kinship] [--variants tf-rope,lstm-dot]
          [--seeds 0 1 2] [--steps 10000] [--jobs 2] [--out DIR] [-- device=cuda ...]
      python scripts/length_study.py --dry-run        (print the job commands only)
      python scripts/length_study.py --table-only     (re-render the table from --out)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from msr.config.data import TaskConfig
from msr.eval.scores import steps_breakdown, wilson_interval
from steps_table import (MISSING, MODEL_OVERRIDES, comma_list, needs_run, read_metrics, run_jobs, step_range,
                         train_command)

# steps_table's Transformer setup without its training budget: here --steps sets every run's
TRANSFORMER = [o for o in MODEL_OVERRIDES["transformer"] if not o.startswith("trainer.")]

VARIANTS: dict[str, list[str]] = {
    "tf-learned": [*TRANSFORMER, "model.positions=learned"],
    "tf-sinusoidal": [*TRANSFORMER, "model.positions=sinusoidal"],
    "tf-rope": [*TRANSFORMER, "model.positions=rope"],
    "tf-alibi": [*TRANSFORMER, "model.positions=alibi"],
    "tf-none": [*TRANSFORMER, "model.positions=none"],
    "tf-learned+random": [*TRANSFORMER, "model.positions=learned", "model.random_positions=true"],
    "tf-rope+random": [*TRANSFORMER, "model.positions=rope", "model.random_positions=true"],
    "tf-rope+random-log": [*TRANSFORMER, "model.positions=rope", "model.random_positions=true",
                           "model.random_range=log_uniform"],
    "tf-rope+gap": [*TRANSFORMER, "model.positions=rope", "model.random_target_gap=64"],
    "tf-alibi+scalable": [*TRANSFORMER, "model.positions=alibi", "model.softmax=scalable"],
    "tf-alibi+conv": [*TRANSFORMER, "model.positions=alibi", "model.qkv_conv=3"],
    "tf-alibi+gap": [*TRANSFORMER, "model.positions=alibi", "model.random_target_gap=64"],
    "lstm": ["model=lstm"],
    "lstm-dot": ["model=lstm", "model.attention=dot"],
    "lstm-additive": ["model=lstm", "model.attention=additive"],
    # not in the default list: a Python loop over time steps, several times slower to train
    "lstm-dot+feeding": ["model=lstm", "model.attention=dot", "model.input_feeding=true"],
}
DEFAULT_VARIANTS = [v for v in VARIANTS
                    if v not in ("lstm-dot+feeding", "tf-rope+random-log", "tf-rope+gap", "tf-alibi+scalable",
                                  "tf-alibi+conv", "tf-alibi+gap")]

TASKS: dict[str, list[str]] = {
    "arith": ["data=arith", "data.scratchpad=true"],  # the scratchpad gives each step a token to show
    "kinship": ["data=kinship"],
    # not in the default list: chain; arith with index hints (each operator and value after a letter:
    # a sorted random subset of A-Z, or a run of consecutive letters)
    "chain": ["data=chain", "data.scratchpad=true"],
    "arith-hints": ["data=arith", "data.scratchpad=true", "data.index_hints=true"],
    "arith-runs": ["data=arith", "data.scratchpad=true", "data.index_hints=true", "data.hint_letters=consecutive"],
    # ... and the scratchpad walking the input (scratchpad_operands); with sorted letters the next
    # letter is copied from the input too
    "arith-ops": ["data=arith", "data.scratchpad=true", "data.index_hints=true", "data.hint_letters=consecutive",
                  "data.scratchpad_operands=true"],
    "arith-ops-sorted": ["data=arith", "data.scratchpad=true", "data.index_hints=true", "data.scratchpad_operands=true"],
}
DEFAULT_TASKS = ["arith", "kinship"]

DATA_SEED = TaskConfig.seed  # the tasks' own default; seed S uses DATA_SEED + S


def job_name(task: str, variant: str, seed: int) -> str:
    return f"{task}-{variant}-s{seed}"


def grid(args) -> list[tuple[str, str, int]]:
    """(task, variant, seed) in table order."""
    return [(t, v, s) for t in args.tasks for v in args.variants for s in args.seeds]


def job_command(task: str, variant: str, seed: int, args) -> list[str]:
    overrides = [*TASKS[task], *VARIANTS[variant], f"seed={seed}", f"data.seed={DATA_SEED + seed}",
                 f"data.test.size={args.test_size}",
                 f"trainer.max_steps={args.steps}", f"trainer.eval_every={max(1, args.steps // 10)}"]
    return train_command(overrides, args.train_steps, args.test_steps,
                         args.out / job_name(task, variant, seed), args.extra)


def run_counts(run_dir: Path) -> dict[str, dict] | None:
    """{steps: {n, correct, ...}} of a completed run's test answers (predictions.jsonl), else None."""
    if read_metrics(run_dir).get("status") != "completed":
        return None
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines() if line]
    return steps_breakdown([r["correct"] for r in rows], [-1 if r["steps"] is None else r["steps"] for r in rows])


def pool(counts: list[dict[str, dict]]) -> dict[int, tuple[int, int]]:
    """steps -> (hits, n) summed over runs."""
    pooled: dict[int, tuple[int, int]] = {}
    for detail in counts:
        for k, cell in detail.items():
            hits, n = pooled.get(int(k), (0, 0))
            pooled[int(k)] = (hits + cell["correct"], n + cell["n"])
    return pooled


def cell(hits: int, n: int) -> str:
    """'0.93 (0.88–0.96)': accuracy and its Wilson 95% interval; '–' without examples."""
    if n == 0:
        return MISSING
    low, high = wilson_interval(hits, n)
    return f"{hits / n:.2f} ({low:.2f}–{high:.2f})"


def table_rows(results: dict[tuple[str, str], list[dict]], steps: list[int]) -> list[list[str]]:
    """One row per (task, variant) from its runs' count dicts: every step's cell, then 'all'."""
    rows = []
    for (task, variant), counts in results.items():
        pooled = pool(counts)
        total = tuple(map(sum, zip(*pooled.values()))) if pooled else (0, 0)
        rows.append([task, variant, str(len(counts)),
                     *(cell(*pooled.get(k, (0, 0))) for k in steps), cell(*total)])
    return rows


def markdown(header: list[str], rows: list[list[str]], left: int) -> str:
    """A GitHub table: the first `left` columns left-aligned, the numbers right-aligned."""
    rule = "|" + "|".join([":---"] * left + ["---:"] * (len(header) - left)) + "|"
    return "\n".join(["| " + " | ".join(header) + " |", rule, *("| " + " | ".join(row) + " |" for row in rows)])


def table(args) -> str:
    (a, b), (c, d) = args.train_steps, args.test_steps
    steps = list(range(c, d + 1))
    results: dict[tuple[str, str], list[dict]] = {}
    walls = []
    for task, variant, seed in grid(args):
        run_dir = args.out / job_name(task, variant, seed)
        counts = run_counts(run_dir)
        results.setdefault((task, variant), [])
        if counts is not None:
            results[(task, variant)].append(counts)
            walls.append(read_metrics(run_dir).get("wall_seconds") or 0.0)
    header = ["task", "variant", "seeds", *map(str, steps), "all"]
    note = (f"Test accuracy (Wilson 95% interval) of the answers pooled over seeds {', '.join(map(str, args.seeds))}"
            f" (\"seeds\" = completed runs), {args.steps} training steps; steps {a}–{b} were seen in training")
    unseen = [k for k in steps if not a <= k <= b]
    note += f", {unseen[0]}–{unseen[-1]} were not." if unseen else "."
    if walls:
        note += f" Mean wall time per run: {sum(walls) / len(walls):.0f} s."
    return markdown(header, table_rows(results, steps), 3) + "\n\n" + note + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                usage="%(prog)s [options] [-- extra hydra overrides for every job]")
    p.add_argument("--tasks", type=comma_list, default=",".join(DEFAULT_TASKS), help="comma list (default: %(default)s)")
    p.add_argument("--variants", type=comma_list, default=",".join(DEFAULT_VARIANTS),
                   help=f"comma list of {', '.join(VARIANTS)} (default: %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="(default: 0 1 2)")
    p.add_argument("--steps", type=int, default=10000, help="trainer.max_steps of every run (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("outputs/length_study"),
                   help="folder for the run folders, their logs and table.md (default: %(default)s)")
    p.add_argument("--train-steps", type=step_range, default="1-4", help="train and val steps (default: %(default)s)")
    p.add_argument("--test-steps", type=step_range, default="1-12", help="test steps (default: %(default)s)")
    p.add_argument("--test-size", type=int, default=1200, help="test examples, ~100 per step count (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="print the job commands; run nothing")
    p.add_argument("--table-only", action="store_true", help="run nothing; render the table from --out")
    args = p.parse_args(own)
    args.extra = extra
    for option, chosen, known in (("--tasks", args.tasks, TASKS), ("--variants", args.variants, VARIANTS)):
        if bad := [x for x in chosen if x not in known]:
            p.error(f"{option}: unknown {', '.join(bad)}; choose from {', '.join(known)}")
    if args.steps < 1 or args.jobs < 1 or args.test_size < 1:
        p.error("--steps, --jobs and --test-size must be >= 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    jobs = [(job_name(*key), args.out / job_name(*key), job_command(*key, args)) for key in grid(args)]
    if args.dry_run:
        print("\n".join(shlex.join(command) for _, _, command in jobs))
        return 0
    print("$ " + shlex.join(["python", sys.argv[0], *argv]), flush=True)
    ok = True
    if not args.table_only:
        # parallel jobs share the cores rather than each starting one thread per core
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.jobs)))
        ok = run_jobs([job for job in jobs if needs_run(job[0], job[1])], args.jobs)
    text = table(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(text)
    print("\n" + text, end="")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
