"""optimizer=muon: torch.optim.Muon for the hidden layers' weight matrices, AdamW for the rest,
as one torch.optim.Optimizer.

Muon (Jordan et al., 2024; the optimizer of the modded-nanogpt speed records) replaces a
matrix's momentum by the nearest semi-orthogonal matrix (Newton-Schulz iterations), so that
every direction of the update has the same size. That suits a matrix that maps hidden
features to hidden features, and only a matrix: the other parameters go to AdamW.

The scheduler, the gradient scaler, gradient clipping, checkpoints and logged_lr all see one
optimizer with one list of parameter groups; each group says with `"muon"` which rule updates
it. The inner Muon and AdamW hold those same group dicts and the same state, so a schedule
that sets group["lr"] reaches both, and state_dict() / load_state_dict() are torch's own.
"""

from __future__ import annotations

import torch
from torch import nn

from msr.train.transfer import part_of


def hidden_matrices(model: nn.Module) -> set[str]:
    """The names of the parameters Muon updates: the 2-D weights of the body (attention and MLP
    matrices, recurrent weight_ih / weight_hh). Muon takes matrices only, so norms and biases
    are AdamW's; and although 2-D, the embeddings (token and position tables) and the head are
    too, as in modded-nanogpt and Keller Jordan's Muon: a table's row is one token's vector,
    trained only by that token's gradient, not a map between hidden spaces, and the head's
    rows are such vectors for the output symbols (with model.tie_embeddings it is the table).
    The parts are transfer.part_of's (finetune's too); nn.Embedding is checked besides, so
    that a table under another name is not orthogonalised."""
    tables = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return {name for name, p in model.named_parameters()
            if p.dim() == 2 and part_of(name)[0] == "body" and id(p) not in tables}


def muon_rates(cfg, muon: bool) -> tuple[float, float]:
    """(lr, weight_decay) of a Muon group or of an AdamW one, before lr_scale and the schedule."""
    return (cfg.lr, cfg.weight_decay) if muon else (cfg.adamw_lr, cfg.adamw_weight_decay)


def muon_options(cfg, fused: bool) -> dict:
    """MuonWithAdamW's options from optimizer.* (a MuonConfig)."""
    adjust = getattr(cfg.adjust_lr_fn, "value", cfg.adjust_lr_fn)  # a plain str: checkpoints load it
    return {"muon": {"momentum": cfg.momentum, "nesterov": cfg.nesterov, "ns_steps": cfg.ns_steps,
                     "adjust_lr_fn": adjust},
            "adamw": {"betas": tuple(cfg.betas), "eps": cfg.eps, "fused": fused}}


class MuonWithAdamW(torch.optim.Optimizer):
    """Groups flagged `"muon": True` step with torch.optim.Muon (`muon` options: momentum,
    nesterov, ns_steps, ...), the others with torch.optim.AdamW (`adamw` options: betas, eps,
    fused). Each group brings its own lr and weight_decay."""

    def __init__(self, param_groups: list[dict], muon: dict | None = None, adamw: dict | None = None):
        param_groups = list(param_groups)
        # each inner optimizer fills its defaults into its groups' dicts, which this one then holds
        self.inner: dict[bool, torch.optim.Optimizer] = {}
        for flag, kind, options in ((True, torch.optim.Muon, muon), (False, torch.optim.AdamW, adamw)):
            groups = [g for g in param_groups if bool(g["muon"]) is flag]
            if groups:  # torch refuses an optimizer without parameters
                self.inner[flag] = kind(groups, **(options or {}))
        super().__init__(param_groups, defaults={})
        self.share()

    def share(self) -> None:
        """Point the inner optimizers at this one's groups and state (load_state_dict replaces both)."""
        for flag, inner in self.inner.items():
            inner.param_groups = [g for g in self.param_groups if bool(g["muon"]) is flag]
            inner.state = self.state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.share()

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for inner in self.inner.values():
            inner.step()
        return loss
