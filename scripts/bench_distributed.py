"""Data-parallel training against one process: the same run, and how fast.

Runs one `msr train` config twice in one invocation, as one process and as
`distributed.nproc_per_node=N` workers (gloo on the CPU, each worker given cores/N threads),
with the same global batch and seed, each as its own subprocess in a scratch folder. Prints
both runs' validation loss and accuracy (metrics.json: the best checkpoint scored on the whole
validation split), their relative difference, the training tokens/s each reports and their
ratio, and the wall clock of each command. Exits 1 when the validation losses differ by more
than --rtol, so it also serves as a check.

Run:  python scripts/bench_distributed.py [--nproc 2] [--steps 200] [-- extra msr overrides]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

# msr's default LSTM on arith, without dropout (each worker draws its own dropout masks, so with
# dropout the two runs are equally good but not the same numbers). A Transformer on arith agrees
# to 1e-7 for 60 steps, then float noise (the all-reduce sums gradients in another order than one
# backward pass) grows through its plateau phase: 1e-2 apart at step 200 (`-- model=transformer`).
CONFIG = ["model=lstm", "model.dropout=0.0", "data=arith", "trainer.batch_size=64",
          "trainer.eval_every=100", "trainer.log_every=50", "logger.tensorboard=false"]


def run(folder: Path, overrides: list[str]) -> dict:
    """One `msr train` in `folder`: its metrics.json, with the command's wall clock."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "msr.cli", "train", *overrides, f"hydra.run.dir={folder}"],
                          capture_output=True, text=True)  # not a terminal: no progress bar
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"msr train {' '.join(overrides)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return {**json.loads((folder / "metrics.json").read_text()), "wall": wall}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nproc", type=int, default=2, help="workers of the data-parallel run")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--rtol", type=float, default=1e-5, help="largest relative difference of val/loss")
    p.add_argument("overrides", nargs="*", help="more msr overrides for both runs (after --)")
    args = p.parse_args()
    overrides = [*CONFIG, f"trainer.max_steps={args.steps}", *args.overrides]
    with tempfile.TemporaryDirectory() as scratch:
        one = run(Path(scratch) / "one", overrides)
        many = run(Path(scratch) / "ddp", [*overrides, f"distributed.nproc_per_node={args.nproc}"])

    table = Table(title=f"msr train, {args.steps} steps, 1 process vs {args.nproc} workers, {os.cpu_count()} cores")
    for col in ("run", "val/loss", "val/accuracy", "train tok/s", "wall s"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for name, r in (("1 process", one), (f"{args.nproc} workers", many)):
        table.add_row(name, f"{r['metrics']['val/loss']:.7f}", f"{r['metrics']['val/accuracy']:.4f}",
                      f"{r['tokens_per_second']:,.0f}", f"{r['wall']:.1f}")
    Console(width=None if sys.stdout.isatty() else 120).print(table)
    difference = abs(many["metrics"]["val/loss"] - one["metrics"]["val/loss"]) / abs(one["metrics"]["val/loss"])
    speed = many["tokens_per_second"] / one["tokens_per_second"]
    print(f"val/loss relative difference {difference:.2e}")
    print(f"RATIO tokens/s {args.nproc} workers / 1 process {speed:.3f}")
    print(f"RATIO wall {args.nproc} workers / 1 process {many['wall'] / one['wall']:.3f}")
    if difference > args.rtol:
        print(f"FAIL: the data-parallel run's val/loss differs by more than {args.rtol:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
