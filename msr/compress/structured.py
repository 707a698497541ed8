"""Structured pruning masks: whole hidden units of the recurrent layers, whole attention heads
of the Transformer blocks, the weakest (smallest L2 norm of their weights) first.

A unit is removed exactly by zeroing what computes it, its rows of every gate (weights and
biases): its gates then read 0, so an LSTM cell's c and h stay 0 (i = f = o = 1/2, g = 0), a
GRU's h halves from 0, an RNN's is tanh(0). A head is removed by zeroing its query, key and
value rows: its output is then an average of zero values. What reads the removed unit or head
(the next layer's columns, the output projection's) is zeroed too, so the zeros show in the
weights as well as in what the model computes.
"""

from __future__ import annotations

import torch
from torch import nn

GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def unit_masks(model: nn.Module, amount: float) -> list[tuple[nn.Module, str, torch.Tensor]]:
    """(module, tensor name, mask) removing round(amount * units) units of each recurrent layer
    or heads of each attention block."""
    masks = []
    for module in model.modules():  # each once, a shared block too
        if isinstance(module, nn.RNNBase):
            masks += recurrent_masks(module, amount, model)
        elif hasattr(module, "qkv") and hasattr(module, "n_heads"):  # msr.models.transformer.SelfAttention
            masks += head_masks(module, amount)
    return masks


def weakest(scores: torch.Tensor, amount: float) -> torch.Tensor:
    """A bool mask of the round(amount * n) lowest scores."""
    dead = torch.zeros(len(scores), dtype=torch.bool)
    dead[scores.argsort()[: round(amount * len(scores))]] = True
    return dead


def recurrent_masks(rnn: nn.RNNBase, amount: float, model: nn.Module) -> list:
    gates, hidden = GATES[rnn.mode], rnn.hidden_size
    masks = []
    for layer in range(rnn.num_layers):
        w_ih, w_hh = getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"weight_hh_l{layer}")
        rows = torch.cat([w_ih, w_hh], dim=1).detach().view(gates, hidden, -1)  # [gate, unit, inputs]
        dead = weakest(rows.pow(2).sum(dim=(0, 2)).cpu(), amount)
        kept_rows = (~dead).repeat(gates).to(w_ih.device)
        masks += [(rnn, f"weight_ih_l{layer}", kept_rows[:, None].expand_as(w_ih).float()),
                  (rnn, f"weight_hh_l{layer}", (kept_rows[:, None] & ~dead.to(w_hh.device)[None]).float()),
                  *[(rnn, f"bias_{kind}_l{layer}", kept_rows.float()) for kind in ("ih", "hh") if rnn.bias]]
        for module, name in readers(rnn, layer, model):  # the columns that read the removed units
            weight = getattr(module, name)
            masks.append((module, name, (~dead).to(weight.device)[None].expand_as(weight).float()))
    return masks


def readers(rnn: nn.RNNBase, layer: int, model: nn.Module) -> list[tuple[nn.Module, str]]:
    """The weights that read the recurrent layer's units: the next layer's, or the output
    layer's (unless attention reads them first, or the output layer is the tied embedding)."""
    if layer + 1 < rnn.num_layers:
        return [(rnn, f"weight_ih_l{layer + 1}")]
    head = getattr(model, "head", None)
    tied = head is not None and head.weight is getattr(getattr(model, "embed", None), "weight", None)
    if getattr(model, "rnn", None) is rnn and getattr(model, "attention", None) is None and not tied:
        return [(head, "weight")]
    return []


def head_masks(attention: nn.Module, amount: float) -> list:
    qkv, proj, heads = attention.qkv, attention.proj, attention.n_heads
    width = qkv.in_features
    size = width // heads
    per_head = qkv.weight.detach().view(3, heads, size, width).pow(2).sum(dim=(0, 2, 3))
    per_head += proj.weight.detach().view(width, heads, size).pow(2).sum(dim=(0, 2))
    dead = weakest(per_head.cpu(), amount).to(qkv.weight.device)
    kept = (~dead).repeat_interleave(size)  # [width]: the kept heads' dimensions
    rows = kept.repeat(3)  # query, key and value rows
    masks = [(qkv, "weight", rows[:, None].expand_as(qkv.weight).float()),
             (proj, "weight", kept[None].expand_as(proj.weight).float())]
    return masks + ([(qkv, "bias", rows.float())] if qkv.bias is not None else [])
