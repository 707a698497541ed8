"""Decoding from any msr model: greedy, beam search and sampling, batched and incremental.

Prompts are grouped by length, so a batch needs no padding: the model reads a group's prompts
in one pass, then extends them one token per call, carrying its state (the RNN hidden state or
the Transformer's KV cache) instead of reading the prefix again. Rows that have produced <eos>
leave the batch through `model.reorder_state` at steps 1, 2, 4, 8, 16 and then every 16, so
short answers end early, long ones cost about the rows still going, and the device is waited
for only at those steps, not at every token.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from msr.models.positions import random_position_models


@dataclass
class Decoded:
    ids: list[int]  # the generated tokens, without the final <eos>
    logprob: float  # the sum of their log-probabilities under the model, <eos> included


def samples_per_prompt(cfg) -> int:
    return cfg.self_consistency if cfg.self_consistency > 1 else cfg.num_return_sequences


@torch.no_grad()
def decode(model, prompts: list[list[int]], eos_id: int, cfg, device, seed: int = 0,
           banned: Sequence[int] = ()) -> list[list[Decoded]]:
    """`samples_per_prompt(cfg)` continuations of each prompt (for beam search, best first).

    No strategy ever writes a token of `banned` (<pad>, <unk>, <sep>: symbols that are not text):
    they leave the next-token scores before the choice. A logprob stays the model's own, not one
    renormalised over the allowed tokens, so scores compare across runs and with teacher forcing.
    """
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    n = samples_per_prompt(cfg)
    by_length = defaultdict(list)
    for i, prompt in enumerate(prompts):
        by_length[len(prompt)].append(i)
    results: list[list[Decoded]] = [[] for _ in prompts]
    rows_per_batch = max(cfg.batch_size // (cfg.beam_size if cfg.strategy == "beam" else n), 1)
    for length, indices in sorted(by_length.items()):
        max_new = new_token_budget(model, length, cfg.max_new_tokens)
        with reserve_positions(model, max_new):
            for start in range(0, len(indices), rows_per_batch):
                chunk = indices[start : start + rows_per_batch]
                tokens = torch.tensor([prompts[i] for i in chunk], device=device)
                if cfg.strategy == "beam":
                    outputs = beam_search(model, tokens, eos_id, max_new, cfg.beam_size, cfg.length_penalty, n, banned)
                else:
                    flat = extend(model, tokens.repeat_interleave(n, dim=0), eos_id, max_new, cfg, generator, banned)
                    outputs = [flat[j * n : (j + 1) * n] for j in range(len(chunk))]
                for i, output in zip(chunk, outputs):
                    results[i] = output
    model.train(was_training)
    return results


@contextmanager
def reserve_positions(model, count: int):
    """A Transformer with random positions draws a sequence's positions at its first pass
    (msr/models/transformer.py): inside this block that draw covers `count` generated tokens too."""
    layers = random_position_models(model)
    for layer in layers:
        layer.decode_budget = count
    try:
        yield
    finally:
        for layer in layers:
            layer.decode_budget = 0


def new_token_budget(model, prompt_length: int, wanted: int) -> int:
    limit = getattr(model, "max_len", None)  # a Transformer's positions end at max_len
    if limit is None:
        return wanted
    if prompt_length >= limit:
        raise ValueError(f"a prompt of {prompt_length} tokens leaves no room under model.max_len={limit}")
    return min(wanted, limit - prompt_length)


def next_logprobs(logits: torch.Tensor, banned: Sequence[int]) -> torch.Tensor:
    """Log-probabilities of the next token per row, -inf for the tokens that may never be written."""
    logprobs = F.log_softmax(logits[:, -1].float(), dim=-1)
    ids = [i for i in banned if 0 <= i < logprobs.shape[-1]]
    if ids:
        logprobs[:, ids] = float("-inf")
    return logprobs


SYNC_EVERY = 16  # steps between looks at which rows are done (after the first few): each look waits for the device


def extend(model, tokens: torch.Tensor, eos_id: int, max_new: int, cfg, generator,
           banned: Sequence[int] = ()) -> list[Decoded]:
    """Greedy or sampled continuations of a batch of equal-length prompts."""
    device = tokens.device
    logits, state = model(tokens)
    logprobs = next_logprobs(logits, banned)
    generated = torch.full((tokens.shape[0], max_new), eos_id, dtype=torch.long, device=device)
    total = torch.zeros(tokens.shape[0], device=device)
    rows = torch.arange(tokens.shape[0], device=device)  # the original row of each batch slot
    done = torch.zeros(tokens.shape[0], dtype=torch.bool, device=device)
    for step in range(max_new):
        chosen = choose(logprobs, cfg, generator)
        going = ~done  # a slot that has produced <eos> keeps running until the next look, ignored
        total[rows] += torch.where(going, logprobs.gather(1, chosen[:, None]).squeeze(1), 0.0)
        generated[rows, step] = torch.where(going, chosen, eos_id)
        done = done | (chosen == eos_id)
        if step + 1 == max_new:
            break
        n = step + 1
        if n & (n - 1) == 0 or n % SYNC_EVERY == 0:  # at 1, 2, 4, 8, 16, 32, 48, ...: drop finished rows
            keep = (~done).nonzero().squeeze(1)
            if len(keep) == 0:
                break
            if len(keep) < len(rows):
                state = model.reorder_state(state, keep)
                rows, done, chosen = rows[keep], done[keep], chosen[keep]
        logits, state = model(chosen[:, None], state)
        logprobs = next_logprobs(logits, banned)
    return [Decoded(trim_at_eos(ids, eos_id), logprob) for ids, logprob in zip(generated.tolist(), total.tolist())]


def choose(logprobs: torch.Tensor, cfg, generator) -> torch.Tensor:
    """The next token per row: the argmax, or a sample under temperature, top-k and top-p."""
    if cfg.strategy == "greedy":
        return logprobs.argmax(dim=-1)
    scores = logprobs / cfg.temperature
    if cfg.top_k:
        kth = scores.topk(min(cfg.top_k, scores.shape[-1]), dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if cfg.top_p < 1.0:
        ordered, order = scores.sort(dim=-1, descending=True)
        # drop a token once the tokens before it already hold top_p of the mass; the first stays
        mass_before = ordered.softmax(dim=-1).cumsum(dim=-1) - ordered.softmax(dim=-1)
        ordered = ordered.masked_fill(mass_before >= cfg.top_p, float("-inf"))
        scores = torch.full_like(scores, float("-inf")).scatter(1, order, ordered)
    return torch.multinomial(scores.softmax(dim=-1), 1, generator=generator).squeeze(1)


def beam_search(model, tokens: torch.Tensor, eos_id: int, max_new: int, beam_size: int, length_penalty: float,
                keep: int, banned: Sequence[int] = ()) -> list[list[Decoded]]:
    """The `keep` best of `beam_size` beams per prompt, ranked by logprob / length**length_penalty.

    A finished beam stays in the beam with its score: its only continuation is <eos> at no cost,
    so it competes with the open ones to the end. With a beam as wide as the number of possible
    sequences, nothing is ever pruned and the search is exhaustive.
    """
    b, k = tokens.shape[0], beam_size
    logits, state = model(tokens)
    rows = torch.arange(b, device=tokens.device).repeat_interleave(k)
    state = model.reorder_state(state, rows)
    logprobs = next_logprobs(logits, banned)[rows]
    vocab = logprobs.shape[-1]
    scores = torch.full((b, k), float("-inf"), device=tokens.device)
    scores[:, 0] = 0.0  # one live beam per prompt at the start
    history = torch.zeros((b, k, 0), dtype=torch.long, device=tokens.device)
    finished = torch.zeros((b, k), dtype=torch.bool, device=tokens.device)
    lengths = torch.zeros((b, k), dtype=torch.long, device=tokens.device)
    frozen = torch.full((vocab,), float("-inf"), device=tokens.device)
    if 0 <= eos_id < vocab:  # a language model over a corpus has no end to stop at
        frozen[eos_id] = 0.0
    for step in range(max_new):
        candidates = torch.where(finished[..., None], frozen, logprobs.view(b, k, vocab))
        scores, flat = (scores[..., None] + candidates).view(b, -1).topk(k, dim=-1)
        beam, token = flat // vocab, flat % vocab
        history = torch.cat([history.gather(1, beam[..., None].expand(-1, -1, history.shape[2])),
                             token[..., None]], dim=2)
        was_finished = finished.gather(1, beam)
        lengths = lengths.gather(1, beam) + (~was_finished).long()
        finished = was_finished | (token == eos_id)
        if bool(finished.all()) or step + 1 == max_new:
            break
        parents = (torch.arange(b, device=tokens.device)[:, None] * k + beam).flatten()
        logits, state = model(token.view(-1, 1), model.reorder_state(state, parents))
        logprobs = next_logprobs(logits, banned)
    ranked = scores / lengths.clamp(min=1).float() ** length_penalty
    outputs = []
    for i in range(b):
        order = [j for j in ranked[i].argsort(descending=True).tolist() if scores[i, j] > float("-inf")][:keep]
        outputs.append([Decoded(trim_at_eos(history[i, j, : lengths[i, j]].tolist(), eos_id), float(scores[i, j]))
                        for j in order])
    return outputs


def trim_at_eos(ids: list[int], eos_id: int) -> list[int]:
    return ids[: ids.index(eos_id)] if eos_id in ids else ids
