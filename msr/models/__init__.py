"""Every model is a causal LM: `model(tokens, state=None) -> (logits, state)`, and
`model.reorder_state(state, index)` keeps the state of the sequences `index` (for decoding)."""

from __future__ import annotations

from torch import nn

from msr.models.recurrent import RecurrentLM
from msr.models.transformer import TransformerLM


def build_model(cfg, vocab_size: int, sep_id: int | None = None) -> nn.Module:
    """A fresh model; `sep_id` (the tokenizer's <sep>) tells a Transformer where inputs end."""
    if cfg.name == "transformer":
        return TransformerLM(cfg, vocab_size, sep_id)
    return RecurrentLM(cfg, vocab_size)


def count_parameters(model: nn.Module) -> int:
    """The model's size: every parameter, frozen or not, each shared (tied) tensor counted once."""
    return sum(p.numel() for p in model.parameters())
