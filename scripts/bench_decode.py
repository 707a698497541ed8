"""Greedy decoding throughput: msr's cached decoder against recomputing the whole prefix per token.

Requirement: generating 256 new tokens with batch 32 on the Transformer, cached decoding runs
at least 5x the tokens/s of recomputing the prefix, both measured in one run.

For each model family, one randomly initialised model (torch.manual_seed(0), eval mode) is built
with `msr.models.build_model`: the Transformer with msr.config.TransformerConfig's defaults
(d_model 128, 2 layers, 4 heads, d_ff 512) but max_len raised to fit prompt + new tokens (at
least 512), the LSTM with RecurrentConfig's defaults (hidden 256). Both sides decode the same
batch of --batch-size random prompts of --prompt-len tokens with the same model:

    cached:    `msr.eval.decoding.decode` with DecodeConfig(strategy=greedy), exactly as msr
               decodes: one pass over the prompts, then one token per call, carrying the KV cache
               (Transformer) or hidden state (LSTM).
    recompute: a bare loop under torch.no_grad(): each step runs the model on the whole sequence
               so far with no state, takes the argmax of the last position's log-softmax (msr's
               greedy rule) and appends it. For the LSTM this reruns the sequence from scratch.

eos_id is `vocab`, an id no model can produce, so every row generates all --new-tokens tokens on
both sides. Greedy decoding of the same model must agree, so the script asserts that both sides
produced identical token sequences: the benchmark is also a correctness check of the cache.

tokens/s = batch * new_tokens / seconds (prompt pass included). After an untimed warm-up of 8 new
tokens per side, each side runs --repeats times, alternating sides (which goes first flips every
round), and the median time is used. Recomputing is slow and on a shared 2-core CPU its time
swung with other load: one 256-token run took 13-45 s for the Transformer and 6-70 s for the
LSTM, so --repeats defaults to 1 (a default run took 22 s quiet; --repeats 3 took 9 min busy).
Prints a table and one `RATIO <model> <cached/recompute>` line per model; exits 1 if the
Transformer is below --min-ratio (the LSTM row is informational).

Run:  python scripts/bench_decode.py   [--models transformer,lstm] [--threads 2] [--repeats 3] ...
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from msr.config import DecodeConfig, RecurrentConfig, TransformerConfig
from msr.eval.decoding import decode
from msr.models import build_model, count_parameters
from benchreport import add_machine_options, models_and_device, report  # scripts/benchreport.py

CHECKED = ("transformer",)  # the family the --min-ratio requirement applies to
WARMUP_TOKENS = 8


def model_config(name: str, max_len: int):
    if name == "transformer":  # the sizes the README's decoding figures were measured with
        return TransformerConfig(n_layers=2, max_len=max_len)
    return RecurrentConfig(name=name, embedding_size=128, hidden_size=256)


@torch.no_grad()
def recompute(model, prompts: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Greedy decoding with no state: each step reads the whole sequence so far again."""
    seq = prompts
    for _ in range(new_tokens):
        logits, _ = model(seq)
        chosen = F.log_softmax(logits[:, -1].float(), dim=-1).argmax(dim=-1)  # msr's greedy rule
        seq = torch.cat([seq, chosen[:, None]], dim=1)
    return seq[:, prompts.shape[1]:]


def cached(model, prompts: torch.Tensor, new_tokens: int, eos_id: int, device) -> torch.Tensor:
    """msr's decoder; returns the generated tokens as a [B, new_tokens] tensor."""
    cfg = DecodeConfig(max_new_tokens=new_tokens, batch_size=prompts.shape[0])
    out = decode(model, prompts.tolist(), eos_id, cfg, device)
    return torch.tensor([row[0].ids for row in out], device=prompts.device)


def timed(fn, device) -> tuple[float, torch.Tensor]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t0, out


def bench(name: str, args, device) -> dict:
    torch.manual_seed(0)
    max_len = max(512, args.prompt_len + args.new_tokens)
    model = build_model(model_config(name, max_len), args.vocab).to(device).eval()
    prompts = torch.randint(args.vocab, (args.batch_size, args.prompt_len), device=device)
    eos_id = args.vocab  # outside the vocabulary: never chosen, so no row stops early

    def run(side: str, n: int) -> torch.Tensor:
        if side == "cached":
            return cached(model, prompts, n, eos_id, device)
        return recompute(model, prompts, n)

    for side in ("cached", "recompute"):  # allocator, thread pool and kernel caches warm for both
        run(side, WARMUP_TOKENS)
    seconds: dict[str, list[float]] = {"cached": [], "recompute": []}
    outputs: dict[str, torch.Tensor] = {}
    for r in range(args.repeats):
        for side in (("recompute", "cached") if r % 2 == 0 else ("cached", "recompute")):
            s, out = timed(lambda: run(side, args.new_tokens), device)
            seconds[side].append(s)
            if side in outputs:
                assert torch.equal(out, outputs[side]), f"{name} {side}: repeats disagree"
            outputs[side] = out
    a, b = outputs["cached"], outputs["recompute"]
    assert a.shape == b.shape == (args.batch_size, args.new_tokens), (a.shape, b.shape)
    if not torch.equal(a, b):
        rows = (a != b).any(dim=1).nonzero().flatten().tolist()
        first = int((a[rows[0]] != b[rows[0]]).nonzero()[0])
        raise AssertionError(f"{name}: cached and recomputed greedy outputs differ in {len(rows)} of "
                             f"{args.batch_size} rows (row {rows[0]} first at new token {first})")
    tokens = args.batch_size * args.new_tokens
    speed = {side: tokens / statistics.median(s) for side, s in seconds.items()}
    return {"name": name, "params": count_parameters(model), **speed,
            "ratio": speed["cached"] / speed["recompute"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="transformer,lstm", help="comma list of rnn, gru, lstm, transformer")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--vocab", type=int, default=64)
    p.add_argument("--repeats", type=int, default=1, help="timed runs per side; the median is used")
    add_machine_options(p, 5.0, "least cached/recompute for the Transformer")
    args = p.parse_args()
    names, device = models_and_device(p, args)

    results = [bench(name, args, device) for name in names]
    print("identical outputs: yes")  # bench() raises otherwise
    title = (f"greedy decode, B={args.batch_size} prompt={args.prompt_len} new={args.new_tokens} "
             f"{device.type} threads={torch.get_num_threads()}, median of {args.repeats}")
    rows = [{**r, "recompute tok/s": r["recompute"], "cached tok/s": r["cached"]} for r in results]
    return report(title, ("recompute tok/s", "cached tok/s", "cached/recompute"), rows, 1, CHECKED, args.min_ratio,
                  f"cached decoding below {args.min_ratio}x recompute")


if __name__ == "__main__":
    sys.exit(main())
