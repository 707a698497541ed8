"""Every model is a causal LM: `model(tokens, state=None) -> (logits, state)`, and
`model.reorder_state(state, index)` keeps the state of the sequences `index` (for decoding)."""

from __future__ import annotations

from torch import nn

from msr.errors import UserError
from msr.models.recurrent import RecurrentLM
from msr.models.transformer import TransformerLM


def build_model(cfg, vocab_size: int, sep_id: int | None = None, coupling_ids: tuple[int, ...] = ()) -> nn.Module:
    """A fresh model; `sep_id` (the tokenizer's <sep>) tells a Transformer where inputs end, and
    `coupling_ids` are the ids of model.coupling_tokens."""
    if cfg.name == "transformer":
        return TransformerLM(cfg, vocab_size, sep_id, coupling_ids)
    return RecurrentLM(cfg, vocab_size)


def build_model_for(cfg, tokenizer) -> nn.Module:
    """build_model with what it needs from `tokenizer`: its size and the ids the model reads."""
    return build_model(cfg, tokenizer.vocab_size, tokenizer.sep_id, coupling_ids(cfg, tokenizer))


def coupling_ids(cfg, tokenizer) -> tuple[int, ...]:
    """The ids of model.coupling_tokens; one the vocabulary lacks is the user's to fix."""
    tokens = list(getattr(cfg, "coupling_tokens", None) or [])
    ids = [tokenizer.tokenizer.token_to_id(token) for token in tokens]
    missing = [token for token, i in zip(tokens, ids) if i is None]
    if missing:
        raise UserError(f"model.coupling_tokens names {', '.join(missing)}, which the data's vocabulary "
                        f"does not have: name tokens the inputs and targets contain")
    return tuple(ids)


def count_parameters(model: nn.Module) -> int:
    """The model's size: every parameter, frozen or not, each shared (tied) tensor counted once."""
    return sum(p.numel() for p in model.parameters())
