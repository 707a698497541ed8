"""Which keys each query of the Transformer may attend to: causal, bidirectional or prefix.

- causal: position i sees positions 0..i, a left-to-right LM (SDPA's is_causal: no mask tensor).
- bidirectional: every position sees every other, as in masked-LM pretraining (BERT).
- prefix: a prefix LM (Raffel et al., 2020): bidirectional over the input, causal over the
  target. A row's prefix is its tokens up to and including the first <sep>, i.e. `input <sep>`;
  a row without a <sep> is all prefix. Nothing leaks: the labels inside the prefix are ignored,
  and the one at <sep> (the first target token) lies outside it.

With a KV cache every mode continues causally: the new tokens are target tokens, each sees
every cached key and the new ones before it. The cache holds the prefix encoded once, so
decoding a prefix LM step by step gives what recomputing the whole sequence gives.
"""

from __future__ import annotations

import torch

MODES = ("causal", "bidirectional", "prefix")


def prefix_lengths(tokens: torch.Tensor, sep_id: int) -> torch.Tensor:
    """[B]: the tokens of each row up to and including its first <sep>; all of them without one."""
    is_sep = tokens == sep_id
    first = is_sep.int().argmax(dim=1)
    return torch.where(is_sep.any(dim=1), first + 1, tokens.shape[1])


def visible_keys(mode: str, tokens: torch.Tensor, sep_id: int | None, past: int) -> torch.Tensor | None:
    """[B or 1, 1, T, T] booleans (True: may attend) for `tokens` [B, T] read without a cache;
    None where the mask is the causal one (always after a cache, `past` > 0)."""
    if mode == "causal" or past > 0:
        return None
    T = tokens.shape[1]
    if mode == "bidirectional":
        return torch.ones(1, 1, T, T, dtype=torch.bool, device=tokens.device)
    keys = torch.arange(T, device=tokens.device)
    causal = keys[None, :] <= keys[:, None]  # [T queries, T keys]
    in_prefix = keys[None, :] < prefix_lengths(tokens, sep_id)[:, None]  # [B, T keys]
    return (causal[None] | in_prefix[:, None, :])[:, None]

