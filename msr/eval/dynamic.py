"""Test-time optimisation: scores of a model whose weights adapt to the test data as it reads it.

Dynamic evaluation (Krause et al. 2018, "Dynamic Evaluation of Neural Sequence Models") scores a
language model's split segment by segment, in order, and after scoring a segment takes SGD steps
on that segment's loss: each segment is scored by a model that has read every earlier one, and
is scored before the model has seen it, so the loss is still a fair code length. We use plain
SGD (Krause's "SGD" variant, without the RMS normalisation and the decay towards the trained
weights of their full method): one learning rate, no state that would carry between segments
beyond the weights themselves.

Test-time training (Sun et al. 2020) does the same for a task model, one example at a time: a
few SGD steps on the next-token loss of the example's own input (its target stays unseen), a
score of that example, then the trained weights back before the next example.

Both adapt the model in memory and restore its weights before they return; the checkpoint's
files are only ever read. Dropout stays off (eval mode), so the numbers are deterministic.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from msr.data.batching import IGNORE, EncodedSplit
from msr.errors import UserError
from msr.eval.metrics import accuracy_by_steps, evaluate

log = logging.getLogger("msr")


def check_adaptable_model(model, meta: dict) -> None:
    """Only float weights can take a gradient step; msr compress's int8 layers cannot."""
    if "quantized" in meta:
        raise UserError("tto.method=dynamic needs float weights to take gradient steps, and this checkpoint is "
                        "int8-quantized (msr compress); evaluate the run it was compressed from")
    if not any(p.requires_grad for p in model.parameters()):
        raise UserError("tto.method=dynamic: this model has no trainable weights to adapt")


@contextmanager
def restored(model):
    """The model's weights (and buffers) as they are now, put back however the block ends."""
    saved = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    was_training = model.training
    model.eval()
    try:
        yield saved
    finally:
        model.load_state_dict(saved)
        model.train(was_training)


def sgd_step(model, optimizer, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
    """One SGD step on the mean next-token loss of `labels`; (that loss summed, tokens counted),
    both measured before the step."""
    logits, _ = model(inputs)
    token_loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE,
                                 reduction="sum")
    tokens = int((labels != IGNORE).sum())
    optimizer.zero_grad(set_to_none=True)
    (token_loss / max(tokens, 1)).backward()
    optimizer.step()
    return float(token_loss.detach()), tokens


def dynamic_lm_loss(model, segments: EncodedSplit, tto) -> dict:
    """Mean next-token loss over the segments, each scored before the model adapts to it."""
    t0 = time.perf_counter()
    with restored(model):
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=tto.lr)
        loss_sum, tokens = 0.0, 0
        for i in range(len(segments)):
            inputs, labels = segments.batch(torch.tensor([i]))
            for step in range(tto.steps):
                segment_loss, segment_tokens = sgd_step(model, optimizer, inputs, labels)
                if step == 0:  # the score: read before any update on this segment
                    loss_sum, tokens = loss_sum + segment_loss, tokens + segment_tokens
        if not math.isfinite(loss_sum):
            raise UserError(f"dynamic evaluation diverged (loss {loss_sum}); lower tto.lr={tto.lr}")
    return {"loss": loss_sum / max(tokens, 1), "tokens": tokens, "seconds": time.perf_counter() - t0}


def input_lm_labels(split: EncodedSplit, row: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The example's own input as a next-token task: its tokens before <sep>, each predicting the
    next. None when the input has fewer than two tokens (nothing to predict)."""
    inputs, labels = split.batch(torch.tensor([row]))
    source_length = int((labels[0] == IGNORE).cumprod(0).sum())  # labels are IGNORE up to the target
    source = inputs[:, :source_length]
    return (source[:, :-1], source[:, 1:]) if source_length >= 2 else None


def train_at_test_time(model, split: EncodedSplit, tto) -> dict:
    """Teacher-forced scores of every example, each after `tto.steps` SGD steps on its own input
    from the trained weights: loss per target token, exact match (= greedy decoding's), by steps."""
    t0 = time.perf_counter()
    loss_sums, correct = torch.zeros(len(split), dtype=torch.float64), torch.zeros(len(split), dtype=torch.bool)
    with restored(model) as trained:
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=tto.lr)
        for row in range(len(split)):
            own_input = input_lm_labels(split, row)
            for _ in range(tto.steps if own_input is not None else 0):
                sgd_step(model, optimizer, *own_input)
            scored = evaluate(model, split, 1, rows=torch.tensor([row]))
            loss_sums[row], correct[row] = -scored["logprobs"][0], scored["correct"][0]
            model.load_state_dict(trained)  # the next example starts from the trained weights again
    if not torch.isfinite(loss_sums).all():
        raise UserError(f"test-time training diverged (a non-finite loss); lower tto.lr={tto.lr}")
    tokens = max(int((split.labels != IGNORE).sum()), 1)
    return {"loss": float(loss_sums.sum()) / tokens, "accuracy": int(correct.sum()) / max(len(split), 1),
            "by_steps": accuracy_by_steps(correct, split.steps), "correct": correct,
            "seconds": time.perf_counter() - t0}


def evaluate_language_model(model, tokenizer, meta: dict, cfg) -> dict:
    """`msr evaluate run=LM tto.method=dynamic`: the split's loss, perplexity and (characters)
    bits per character, without and with dynamic evaluation, on the same segments."""
    from msr.data import corpus_texts, load_data
    from msr.data.batching import pack

    texts = corpus_texts(load_data(cfg.data, cfg.paths))
    if cfg.split not in texts:
        raise UserError(f"data={cfg.data.name} has no {cfg.split} split; choose split= one of {', '.join(texts)}")
    length = cfg.tto.segment_length or meta["config"]["data"]["block_size"]
    max_len = getattr(model, "max_len", None)
    if max_len is not None and length > max_len:
        raise UserError(f"tto.segment_length={length} is longer than the run's model.max_len={max_len}; "
                        f"give tto.segment_length <= {max_len}")
    ids = tokenizer.encode_batch([texts[cfg.split]])[0]
    ids = ids[: cfg.limit * length + 1] if cfg.limit else ids  # limit=N: the first N segments
    if len(ids) <= length:
        raise UserError(f"the {cfg.split} split has {len(ids)} tokens, not enough for one segment of "
                        f"tto.segment_length={length}; lower it")
    segments = pack(ids, length).to(next(model.parameters()).device)  # in order, each token scored once
    static = evaluate(model, segments, cfg.decode.batch_size)["loss"]
    dynamic = dynamic_lm_loss(model, segments, cfg.tto)
    metrics = {}
    for prefix, loss in ((f"{cfg.split}/", static), (f"tto/{cfg.split}/", dynamic["loss"])):
        metrics.update({prefix + "loss": loss, prefix + "perplexity": math.exp(min(loss, 50.0))})
        if meta["config"]["data"]["tokenizer"] == "char":
            metrics[prefix + "bits_per_character"] = loss / math.log(2)
    log.info("dynamic evaluation, %d %s segments of %d tokens: loss %.4f without, %.4f with (%.1f s)",
             len(segments), cfg.split, length, static, dynamic["loss"], dynamic["seconds"])
    return {"metrics": metrics, "split": cfg.split, "examples": len(segments),
            "tto": tto_record(cfg.tto, dynamic["seconds"], segment_length=length, tokens=dynamic["tokens"])}


def task_with_tto(model, encoded: EncodedSplit, cfg, without: dict) -> dict:
    """metrics.json's additions for a task run: tto/<split>/loss, accuracy, accuracy by steps;
    `without`: metrics.evaluate's scores of the same examples by the trained weights."""
    adapted = train_at_test_time(model, encoded, cfg.tto)
    split = cfg.split
    log.info("test-time training, %d %s examples: exact match %.4f without, %.4f with; loss %.4f without, "
             "%.4f with (%.1f s)", len(encoded), split, without["accuracy"], adapted["accuracy"], without["loss"],
             adapted["loss"], adapted["seconds"])
    return {"metrics": {f"tto/{split}/loss": adapted["loss"], f"tto/{split}/accuracy": adapted["accuracy"]},
            "tto": tto_record(cfg.tto, adapted["seconds"], accuracy_by_steps=adapted["by_steps"])}


def tto_record(tto, seconds: float, **details) -> dict:
    return {"method": tto.method.value, "optimizer": "sgd", "lr": tto.lr, "steps": tto.steps, **details,
            "seconds": round(seconds, 3)}
