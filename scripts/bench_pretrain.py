"""Time to a validation loss: msr's Tiny Shakespeare preset against nanoGPT's own script, side by side.

nanoGPT (karpathy/nanoGPT, not part of msr: clone it and pass --nanogpt DIR) runs its README's
CPU configuration, `train.py config/train_shakespeare_char.py --device=cpu --compile=False
--eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4
--n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0`, on a scratch copy of its
files with the corpus from --data (its prepare.py downloads only when input.txt is missing).
msr runs `msr pretrain +experiment=shakespeare_char_cpu`. Both are subprocesses of this one
invocation, one after the other, with the same threads; each clock starts at its launch, so
start-up (imports, data preparation) counts.

Each side's evaluation lines are timestamped as they arrive ("step N: ... val loss X"): the
time to --target is the first evaluation at or below it, as that program measures it (nanoGPT
estimates on 20 batches; msr's preset on a sample too, trainer.eval_iters). The table also
gives each run's whole wall clock and final validation loss (msr's: the best checkpoint scored
on the whole validation split). Prints `RATIO time-to-target msr/nanoGPT` and exits 1 when msr
does not reach the target or the ratio is above --max-ratio.

Run:  python scripts/bench_pretrain.py --nanogpt ~/nanoGPT [--data ../shared/data] [-- msr overrides]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

NANOGPT_CPU = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20",
               "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4",
               "--n_embd=128", "--max_iters=2000", "--lr_decay_iters=2000", "--dropout=0.0"]
NANOGPT_EVAL = re.compile(r"step (\d+): train loss [\d.]+, val loss ([\d.]+)")
MSR_EVAL = re.compile(r"step (\d+): val loss ([\d.]+)")


def timed(command: list[str], cwd: Path, pattern: re.Pattern, env: dict) -> dict:
    """Run `command`, timestamping each evaluation line it prints (stdout and stderr together)."""
    evals, lines = [], []
    t0 = time.perf_counter()
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as process:
        for line in process.stdout:
            lines.append(line)
            if match := pattern.search(line):
                evals.append((time.perf_counter() - t0, int(match[1]), float(match[2])))
    wall = time.perf_counter() - t0
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({process.returncode}):\n{''.join(lines[-30:])}")
    return {"evals": evals, "wall": wall, "lines": lines}


def first_at(evals: list[tuple[float, int, float]], target: float) -> tuple[float, int] | None:
    return next(((t, step) for t, step, loss in evals if loss <= target), None)


def nanogpt(source: Path, corpus: Path, scratch: Path, env: dict) -> dict:
    work = scratch / "nanogpt"
    for name in ("train.py", "model.py", "configurator.py", "config", "data/shakespeare_char/prepare.py"):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        copy = shutil.copytree if (source / name).is_dir() else shutil.copy
        copy(source / name, work / name)
    shutil.copy(corpus, work / "data/shakespeare_char/input.txt")
    # prepare.py imports requests for the download it skips when input.txt is there: offline,
    # a module that refuses to download stands in where requests is not installed
    (scratch / "offline").mkdir()
    (scratch / "offline/requests.py").write_text("def get(url, *a, **k):\n    raise OSError(f'offline: {url}')\n")
    path = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(scratch / "offline")]))
    subprocess.run([sys.executable, "prepare.py"], cwd=work / "data/shakespeare_char", check=True,
                   capture_output=True, env={**env, "PYTHONPATH": path})
    result = timed([sys.executable, "train.py", *NANOGPT_CPU], work, NANOGPT_EVAL, env)
    result["final"] = result["evals"][-1][2]
    return result


def msr(data: Path, scratch: Path, overrides: list[str], env: dict) -> dict:
    run = scratch / "msr-run"
    result = timed([sys.executable, "-m", "msr.cli", "pretrain", "+experiment=shakespeare_char_cpu",
                    f"paths.data={data}", "logger.tensorboard=false", f"hydra.run.dir={run}", *overrides],
                   scratch, MSR_EVAL, env)
    result["final"] = json.loads((run / "metrics.json").read_text())["metrics"]["val/loss"]
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nanogpt", type=Path, help="a checkout of karpathy/nanoGPT (omit with --nanogpt-seconds)")
    p.add_argument("--nanogpt-seconds", type=float, help="skip nanoGPT: its time to the target, measured before")
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data",
                   help="the folder holding tinyshakespeare/input.txt (default: ../shared/data)")
    p.add_argument("--target", type=float, default=1.886, help="validation loss to reach (nanoGPT's CPU run ends at 1.886)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="OMP_NUM_THREADS of both runs")
    p.add_argument("--max-ratio", type=float, default=0.6, help="largest msr/nanoGPT time to the target")
    p.add_argument("overrides", nargs="*", help="more msr overrides (after --)")
    args = p.parse_args()
    corpus = args.data / "tinyshakespeare/input.txt"
    if not corpus.is_file():
        p.error(f"{corpus} not found: give --data, the folder holding tinyshakespeare/input.txt")
    if args.nanogpt is None and args.nanogpt_seconds is None:
        p.error("give --nanogpt DIR (a karpathy/nanoGPT checkout) or --nanogpt-seconds S")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}

    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        results = {}
        if args.nanogpt is not None:
            results["nanoGPT"] = nanogpt(args.nanogpt, corpus, scratch, env)
        results["msr"] = msr(args.data.resolve(), scratch, args.overrides, env)

    table = Table(title=f"Tiny Shakespeare, nanoGPT's CPU shape (4x4x128, block 64), {args.threads} threads")
    for col in ("program", "wall s", "final val loss", f"first eval <= {args.target}", "at step"):
        table.add_column(col, justify="left" if col == "program" else "right")
    reached = {}
    for name, r in results.items():
        hit = first_at(r["evals"], args.target)
        reached[name] = hit[0] if hit else None
        table.add_row(name, f"{r['wall']:.1f}", f"{r['final']:.4f}", f"{hit[0]:.1f} s" if hit else "never",
                      str(hit[1]) if hit else "")
    Console(width=None if sys.stdout.isatty() else 120).print(table)
    baseline = reached.get("nanoGPT") or args.nanogpt_seconds
    if "nanoGPT" in results and reached["nanoGPT"] is None:
        baseline = results["nanoGPT"]["wall"]  # it ends above the target: its whole run is the yardstick
        print(f"nanoGPT never reached {args.target}: comparing with its whole run")
    if reached["msr"] is None:
        print(f"FAIL: msr never reached {args.target}", file=sys.stderr)
        return 1
    ratio = reached["msr"] / baseline
    print(f"RATIO time-to-target msr/nanoGPT {ratio:.3f}")
    if ratio > args.max_ratio:
        print(f"FAIL: msr took more than {args.max_ratio} of nanoGPT's time", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
