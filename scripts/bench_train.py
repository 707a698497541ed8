"""Training throughput of msr's training step against a bare PyTorch loop doing the same work.

For each model family, one model is built with `msr.models.build_model`; the bare loop gets a
`copy.deepcopy` of it before any training, so both start from identical weights. Both sides
run in this process on the same data set of [N, T] token sequences held on the device (labels =
next tokens, the last third of positions supervised, the rest -100) and each step does:

    fetch B rows -> forward -> cross-entropy over target positions -> backward -> clip global
    grad norm to 1.0 -> AdamW step (lr 3e-3, weight decay on matrices only) -> LambdaLR step
    (msr's warmup + cosine multiplier), with zero_grad(set_to_none=True) once per step.

msr: what `msr.train.loop.fit` runs per step: the shuffled `BatchOrder` index, the token count,
`EncodedSplit.batch` (rows trimmed to the longest), then `Trainer.step` with its fp32-disabled
autocast / GradScaler wrappers. Bare: nanoGPT-style random rows, then the hand-written loop in
`bare_step`. The difference between the two is exactly msr's overhead.

tokens/s = B * T * chunk / seconds-per-chunk. Each side runs --repeats x --steps timed steps,
in chunks of --chunk steps that alternate between the sides (which side goes first flips every
round), and the median chunk time is used: bursts of load from other processes then land on
both sides alike and drop out, where long back-to-back blocks swung the ratio by +-20% on a
busy 2-core machine. Prints a table and one `RATIO <model> <msr/bare>` line per model; exits 1
if LSTM or Transformer is below --min-ratio, so it can serve as a check.

Run:  python scripts/bench_train.py   [--models rnn,gru,lstm,transformer] [--threads 2] ...

--tensorboard compares instead msr's loop with TensorBoard logging on and off (logger.tensorboard):
both sides run fit's own per-step code (`optimizer_step`, then `log_training` every --log-every
steps into a `RunLogger` of a scratch run folder: history.jsonl on both sides, the event file on
one) on one model, in chunks of --log-every steps so every chunk holds one logged step. RATIO is
on/off; exits 1 below --min-ratio (0.98 there: logging may cost at most 2%).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from msr.config import AdamWConfig, CosineConfig, RecurrentConfig, TrainerConfig, TransformerConfig
from msr.data.batching import IGNORE, BatchOrder, EncodedSplit
from msr.models import build_model, count_parameters
from msr.runs import RunDir
from msr.train.loop import EarlyStopping, LoopState, Trainer, due, log_training, optimizer_step
from msr.train.progress import Progress
from msr.train.tensorboard import RunLogger
from msr.train.optim import build_optimizer, build_scheduler, logged_lr, lr_multiplier
from benchreport import MODELS, add_machine_options, models_and_device, report  # scripts/benchreport.py

CHECKED = ("lstm", "transformer")  # the families the --min-ratio requirement applies to


def model_config(name: str):
    if name == "transformer":  # as conf/model/transformer.yaml
        return TransformerConfig(d_model=128, n_layers=3, n_heads=4, d_ff=512)
    return RecurrentConfig(name=name, embedding_size=64, hidden_size=128)  # as conf/model/<name>.yaml


# Larger shapes, as whole language-model workloads (every position supervised): name ->
# (model config, batch, sequence length, vocabulary). The GPT ones are nanoGPT's Shakespeare
# (6x6x384, block 256) and bench.py's GPT-2 small (12x12x768, block 1024, batch 12).
SHAPES = {
    "gpt-6x384": (TransformerConfig(d_model=384, n_layers=6, n_heads=6, d_ff=1536, max_len=256), 64, 256, 65),
    "gpt2-small": (TransformerConfig(d_model=768, n_layers=12, n_heads=12, d_ff=3072, max_len=1024), 12, 1024, 50304),
    "lstm-1024x2": (RecurrentConfig(name="lstm", embedding_size=1024, hidden_size=1024, num_layers=2), 64, 256, 65),
}


def workload(name: str, args) -> tuple:
    """(model config, batch, sequence length, vocabulary, share of positions supervised)."""
    if name in SHAPES:
        return (*SHAPES[name], 1.0)
    return model_config(name), args.batch_size, args.seq_len, args.vocab, 1 / 3


def flops_per_token(model, cfg, seq_len: int) -> float | None:
    """Training FLOPs per token as nanoGPT's estimate_mfu counts them (PaLM appendix B): 6 per
    parameter except the position table, plus attention's 12 * layers * width * T. Transformer only."""
    if not isinstance(cfg, TransformerConfig):
        return None
    positions = model.positions.numel() if isinstance(getattr(model, "positions", None), torch.nn.Parameter) else 0
    return 6 * (count_parameters(model) - positions) + 12 * cfg.n_layers * cfg.d_model * seq_len


def peak_flops(device, given: float | None) -> tuple[float, str]:
    """The FLOP/s MFU divides by: --peak-tflops, else on a CPU what one large fp32 matmul reaches here."""
    if given:
        return given * 1e12, f"{given:g} TFLOP/s given"
    if device.type == "cuda":
        return 989e12, "989 TFLOP/s, an H100's dense bf16"
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    best = min(timed(lambda: a @ b, 5, device) / 5 for _ in range(5))
    return 2 * 2048**3 / best, f"{2 * 2048**3 / best / 1e9:.0f} GFLOP/s, this CPU's fp32 matmul"


def make_split(n: int, T: int, vocab: int, device, supervised: float = 1 / 3) -> EncodedSplit:
    """A data set of n sequences, on the device once, as msr's training loop holds its data;
    the last `supervised` share of positions have labels (like the tasks' answers)."""
    seq = torch.randint(vocab, (n, T + 1))
    labels = seq[:, 1:].clone()
    labels[:, : T - round(T * supervised)] = IGNORE
    split = EncodedSplit(seq[:, :-1], labels, torch.full((n,), T), torch.full((n,), -1), 0)
    return split.to(device)


def bare_optimizer(model, opt_cfg, sched_cfg, total_steps):
    # Same param groups as build_optimizer so AdamW does the same foreach work on both sides.
    params = list(model.parameters())
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": opt_cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    fused = params[0].is_cuda or None  # nanoGPT's choice: fused AdamW on a GPU
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=opt_cfg.lr, fused=fused)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_multiplier(sched_cfg, s, total_steps))
    return opt, sched


def bare_step(model, opt, sched, x, y, clip: float, autocast) -> None:
    with autocast():
        logits, _ = model(x)
    loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    sched.step()


def interleaved_seconds(sides: dict, args, device) -> dict[str, list[float]]:
    """Seconds of each chunk of args.chunk steps per side, the two sides taking turns (and
    turning the order each round) so that drifting machine load falls on both alike."""
    for step in sides.values():  # allocator, thread pool and kernel caches warm for both sides
        timed(step, args.warmup, device)
    seconds = {side: [] for side in sides}
    names = list(sides)
    for r in range(max(args.repeats * args.steps // args.chunk, 1)):
        for side in (names if r % 2 == 0 else names[::-1]):
            seconds[side].append(timed(sides[side], args.chunk, device))
    return seconds


def timed(step, steps: int, device) -> float:
    """Seconds for `steps` calls of step()."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()  # msr's step returns without a sync, so wait for queued GPU work on both sides
    return time.perf_counter() - t0


def bench(name: str, args, device) -> dict:
    torch.manual_seed(0)
    cfg, batch_size, seq_len, vocab, supervised = workload(name, args)
    model = build_model(cfg, vocab).to(device)
    bare_model = copy.deepcopy(model)  # before any step: same weights (deepcopy keeps tied weights tied)
    opt_cfg, sched_cfg = AdamWConfig(lr=3e-3), CosineConfig(warmup_steps=100)
    trainer_cfg = TrainerConfig(precision=args.precision)
    total = args.warmup + args.repeats * args.steps
    optimizer = build_optimizer(opt_cfg, model)
    trainer = Trainer(model, optimizer, build_scheduler(sched_cfg, optimizer, total), trainer_cfg, device)
    opt, sched = bare_optimizer(bare_model, opt_cfg, sched_cfg, total)
    model.train()
    bare_model.train()
    split = make_split(64 * batch_size, seq_len, vocab, device, supervised)
    order, counter = BatchOrder(len(split), batch_size, seed=0), itertools.count()

    def msr_step() -> None:
        # what msr's fit() does per step: the step's rows, token count, a trimmed batch, the update
        index = order(next(counter))
        int(split.lengths[index].sum())
        trainer.step([split.batch(index)])

    def bare() -> None:
        # nanoGPT-style get_batch: random rows of the tensors already on the device
        index = torch.randint(len(split), (batch_size,), device=device)
        bare_step(bare_model, opt, sched, split.inputs[index], split.labels[index], trainer_cfg.grad_clip,
                  trainer.autocast)  # the dtype msr's trainer.precision chose, on both sides

    seconds = interleaved_seconds({"msr": msr_step, "bare": bare}, args, device)
    tokens = batch_size * seq_len * args.chunk
    speed = {side: tokens / statistics.median(s) for side, s in seconds.items()}
    result = {"name": name, "params": count_parameters(model), **speed, "ratio": speed["msr"] / speed["bare"],
              "shape": f"B{batch_size} T{seq_len}", "precision": str(trainer.autocast.keywords["dtype"]).split(".")[1]
              if trainer.autocast.keywords["enabled"] else "fp32"}
    if (flops := flops_per_token(model, cfg, seq_len)) and args.peak:
        result["msr MFU"] = f"{speed['msr'] * flops / args.peak:.1%}"
    return result


def bench_logging(name: str, args, device, folder) -> dict:
    """tokens/s of fit's steps with TensorBoard logging on and off, alternating chunks on one model."""
    torch.manual_seed(0)
    model = build_model(model_config(name), args.vocab).to(device)
    cfg = TrainerConfig(log_every=args.log_every)
    optimizer = build_optimizer(AdamWConfig(lr=3e-3), model)
    total = 2 * (args.warmup + args.repeats * args.steps)
    trainer = Trainer(model, optimizer, build_scheduler(CosineConfig(warmup_steps=100), optimizer, total), cfg, device)
    model.train()
    split = make_split(64 * args.batch_size, args.seq_len, args.vocab, device)
    order = BatchOrder(len(split), args.batch_size, seed=0)
    targets = (split.labels != IGNORE).sum(1).cpu()

    def side(on: bool, progress: Progress):
        logger = RunLogger(RunDir(f"{folder}/{name}-{'on' if on else 'off'}", "train", "bench"), tensorboard=on)
        logger.open()
        state = LoopState(EarlyStopping(cfg.early_stopping))
        state.start_clock()

        def step() -> None:  # fit's loop body, without evaluation and checkpoints
            trainer.measure_grad_norm = due(state.step + 1, cfg.log_every, total)
            optimizer_step(trainer, state, split, targets, order, 1)
            if due(state.step, cfg.log_every, total):
                log_training(state, logged_lr(optimizer), trainer.grad_norm, logger, progress)
        return step, logger

    with Progress(total, interactive=False) as progress:
        (off, off_logger), (on, on_logger) = side(False, progress), side(True, progress)
        sides = {"off": off, "on": on}
        for step in sides.values():
            timed(step, args.log_every, device)
        seconds = {s: [] for s in sides}
        for r in range(max(args.repeats * args.steps // args.log_every, 1)):
            for s in (("off", "on") if r % 2 == 0 else ("on", "off")):
                seconds[s].append(timed(sides[s], args.log_every, device))
    on_logger.close()
    off_logger.close()
    tokens = args.batch_size * args.seq_len * args.log_every
    speed = {s: tokens / statistics.median(t) for s, t in seconds.items()}
    return {"name": name, "params": count_parameters(model), **speed, "ratio": speed["on"] / speed["off"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="lstm,transformer",
                   help=f"comma list of rnn, gru, lstm, transformer (64 x 16 tokens) or {', '.join(SHAPES)}")
    p.add_argument("--precision", default="auto", help="trainer.precision of both sides (auto, fp32, bf16)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the device's peak for MFU (default: an H100's 989 on CUDA, a measured matmul on CPU)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=16)
    p.add_argument("--vocab", type=int, default=20)
    p.add_argument("--steps", type=int, default=200, help="timed steps per repeat")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps per side before timing")
    p.add_argument("--repeats", type=int, default=3, help="timed steps per side = repeats x steps")
    p.add_argument("--chunk", type=int, default=10, help="steps per timed chunk; sides alternate by chunk")
    p.add_argument("--tensorboard", action="store_true", help="compare TensorBoard logging on and off instead")
    p.add_argument("--log-every", type=int, default=TrainerConfig().log_every, help="with --tensorboard")
    logging_cost = "--tensorboard" in sys.argv[1:]  # its own default minimum: logging may cost at most 2%
    add_machine_options(p, 0.98 if logging_cost else 0.9,
                        "least on/off (--tensorboard)" if logging_cost else "least msr/bare for LSTM and Transformer")
    args = p.parse_args()
    names, device = models_and_device(p, args, MODELS if args.tensorboard else (*MODELS, *SHAPES))
    if args.tensorboard:
        return tensorboard_cost(names, args, device)

    args.peak, peak = peak_flops(device, args.peak_tflops)
    results = [bench(name, args, device) for name in names]
    title = (f"train step, {device.type} threads={torch.get_num_threads()}, median of {args.chunk}-step chunks; "
             f"MFU against {peak}")
    rows = [{**r, "bare tok/s": r["bare"], "msr tok/s": r["msr"]} for r in results]
    return report(title, ("bare tok/s", "msr tok/s", "msr/bare"), rows, 3, CHECKED + tuple(SHAPES), args.min_ratio,
                  f"msr below {args.min_ratio} of the bare loop", extra=("shape", "precision", "msr MFU"))


def tensorboard_cost(names: list[str], args, device) -> int:
    with tempfile.TemporaryDirectory() as folder:
        results = [bench_logging(name, args, device, folder) for name in names]
    title = (f"TensorBoard logging every {args.log_every} steps, B={args.batch_size} T={args.seq_len} {device.type} "
             f"threads={torch.get_num_threads()}, median of {args.log_every}-step chunks")
    rows = [{**r, "off tok/s": r["off"], "on tok/s": r["on"]} for r in results]
    return report(title, ("off tok/s", "on tok/s", "on/off"), rows, 3, tuple(names), args.min_ratio,
                  f"TensorBoard logging costs more than {1 - args.min_ratio:.0%} of tokens/s")


if __name__ == "__main__":
    sys.exit(main())
