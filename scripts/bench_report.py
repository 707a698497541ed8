"""How long `msr report` takes on a 100-run sweep folder (the issue's target: at most 3 s).

Writes 100 synthetic runs (4 models x 5 learning rates x 5 seeds, 3 of them failed; each with a
30-line history and 500 test predictions, so every group has paired comparisons) into a
temporary folder, then times `msr report` on it in a fresh process, with and without plots.

    python scripts/bench_report.py
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

MODELS, RATES, SEEDS = ["lstm", "gru", "rnn", "transformer"], [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], range(5)


def write_runs(root: Path) -> None:
    rng = random.Random(0)
    jobs = [(m, lr, s) for m in MODELS for lr in RATES for s in SEEDS]
    for job, (model, lr, seed) in enumerate(jobs):
        folder = root / str(job)
        (folder / ".hydra").mkdir(parents=True)
        size = {"d_model": 32} if model == "transformer" else {"hidden_size": 32}
        config = {"seed": seed, "model": {"name": model, **size}, "optimizer": {"name": "adamw", "lr": lr},
                  "data": {"name": "arith"}, "sweep": {"objective": "val/accuracy", "direction": "maximize"}}
        (folder / ".hydra/config.yaml").write_text(yaml.safe_dump(config))
        acc = rng.random()
        metrics = {"val/loss": 2 - acc, "val/accuracy": acc, "test/accuracy": acc}
        record = {"command": "train", "status": "failed" if job % 37 == 5 else "completed", "metrics": metrics,
                  "accuracy_by_steps": {str(s): acc / s for s in range(1, 5)}, "seed": seed, "data_fingerprint": "x"}
        (folder / "metrics.json").write_text(json.dumps(record))
        (folder / "history.jsonl").write_text("".join(
            json.dumps({"step": 100 * s, "val/loss": 2 - acc * s / 30, "val/accuracy": acc * s / 30}) + "\n"
            for s in range(1, 31)))
        (folder / "predictions.jsonl").write_text("".join(
            json.dumps({"input": f"{i} + 1 =", "target": str(i), "correct": rng.random() < acc, "steps": 1 + i % 4})
            + "\n" for i in range(500)))
    (root / "multirun.yaml").write_text("hydra: {}\n")


def timed(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "msr.cli", "report", *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweep"
        write_runs(sweep)
        without = timed(str(sweep), "--no-plots")
        with_plots = timed(str(sweep))
    print(f"msr report, 100 runs: {with_plots:.2f} s with plots, {without:.2f} s without (target <= 3 s)")


if __name__ == "__main__":
    main()
