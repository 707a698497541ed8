"""Time to get a built-in task ready for training: generate (or read from the cache) and tokenize.

Runs the same preparation `msr train` does — `load_data` (draw the splits, or read the cached
Arrow table), build the vocabulary from train, `encode` every split into padded tensors — twice,
each time in a fresh Python process: first against an empty cache (generation), then again with
the same settings (the cache is reused). Imports (torch, datasets: about 2 s) are timed apart
from the data work, since every msr command pays them anyway.

Run:  python scripts/bench_data.py [--task arith] [--train-size 100000]
Prints one line per phase and `SECONDS cold=… warm=…`; exits 1 if the data work exceeds
--max-cold / --max-warm seconds (defaults 15 and 2, the targets of issue 3).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import datasets, torch
from msr.config import SCHEMAS, PathsConfig, SplitConfig
from msr.data import load_data
from msr.data.batching import encode
from msr.data.tokenizer import TextTokenizer
t1 = time.perf_counter()
task, size, cache = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cfg = SCHEMAS[f"data/{task}"](train=SplitConfig(size=size))
data = load_data(cfg, PathsConfig(cache=cache))
t2 = time.perf_counter()
tokenizer = TextTokenizer.build(r["input"] + " " + r["target"] for r in data.splits["train"])
encoded = {name: encode(rows, tokenizer) for name, rows in data.splits.items()}
t3 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "load": t2 - t1, "tokenize": t3 - t2,
                  "examples": sum(len(e) for e in encoded.values())}))
"""


def phase(task: str, size: int, cache: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, task, str(size), cache], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="arith")
    p.add_argument("--train-size", type=int, default=100_000)
    p.add_argument("--max-cold", type=float, default=15.0)
    p.add_argument("--max-warm", type=float, default=2.0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="msr-bench-cache-") as cache:
        cold = phase(args.task, args.train_size, cache)
        warm = phase(args.task, args.train_size, cache)
    seconds = {}
    for name, t in (("cold (generate + cache)", cold), ("warm (cache reused)", warm)):
        work = t["load"] + t["tokenize"]
        seconds[name.split()[0]] = work
        print(f"{name:24s} {t['examples']:,} examples: load {t['load']:.2f} s + tokenize {t['tokenize']:.2f} s "
              f"= {work:.2f} s   (imports {t['imports']:.2f} s)")
    print(f"SECONDS cold={seconds['cold']:.2f} warm={seconds['warm']:.2f}")
    return 0 if seconds["cold"] <= args.max_cold and seconds["warm"] <= args.max_warm else 1


if __name__ == "__main__":
    sys.exit(main())
