"""Magnitude pruning of the weight matrices through torch.nn.utils.prune.

While pruned, each matrix is `weight_orig * weight_mask` (a forward pre-hook), so a fine-tune
trains the kept entries and the pruned ones stay zero; `make_permanent` then writes the
product back as a plain `weight`, which is what checkpoints hold.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from msr.compress.structured import unit_masks


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, name) of every weight matrix: Linear layers and the recurrent layers' input and
    hidden weights. Embeddings, biases and norms are small and stay; so does an output layer
    tied to the embedding, which is one tensor with it."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    found = []
    for module in model.modules():
        if isinstance(module, nn.Linear) and id(module.weight) not in embeddings:
            found.append((module, "weight"))
        elif isinstance(module, nn.RNNBase):
            found += [(module, name) for name in module._flat_weights_names if name.startswith("weight")]
    return found


def prune_model(model: nn.Module, amount: float, scope: str) -> None:
    """Zero `amount` of the entries with the smallest |w|: over all matrices at once (global) or
    in each (layer), rounding `amount * entries` to the nearest integer as torch does; or
    `amount` of the hidden units of each recurrent layer, the heads of each attention block (units)."""
    matrices = prunable(model)
    if scope == "units":
        for module, name, mask in unit_masks(model, amount):
            prune.custom_from_mask(module, name, mask)
    elif scope == "global":
        prune.global_unstructured(matrices, pruning_method=prune.L1Unstructured, amount=amount)
    else:
        for module, name in matrices:
            prune.l1_unstructured(module, name, amount=amount)


def make_permanent(model: nn.Module) -> nn.Module:
    """The model with each pruned matrix as a plain parameter holding its zeros (in place)."""
    for module in model.modules():
        for hook in [h for h in module._forward_pre_hooks.values() if isinstance(h, prune.BasePruningMethod)]:
            prune.remove(module, hook._tensor_name)
    return model


def plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of a model being fine-tuned under its masks with each pruned matrix as it
    computes (`orig * mask`, under its own name): what the checkpoints hold, for a plain model."""
    state = model.state_dict()
    for key in [k for k in state if k.endswith("_orig")]:
        name = key.removesuffix("_orig")
        state[name] = state.pop(key) * state.pop(name + "_mask")
    return state


def zeros_of(model: nn.Module) -> tuple[int, int]:
    """(zero entries, entries) of the prunable weight matrices, as the model computes with them."""
    matrices = [getattr(module, name) for module, name in prunable(model)]
    return sum(int((w == 0).sum()) for w in matrices), sum(w.numel() for w in matrices)
