"""BERT's masked-LM inputs (Devlin et al., 2019): choose a share of each block's tokens and predict them.

Of each block, round(mask_rate × length) positions are chosen (as BERT's own data script does,
so every block of a split has the same number of targets); each chosen token becomes <mask>
with probability mask_token, a random symbol with probability random_token, and stays itself
otherwise: the model must predict every chosen token without knowing which of them it can
trust. The labels are the original tokens at the chosen positions and IGNORE elsewhere, so the
loss counts those positions only; unlike a causal LM's, label i is token i, not token i+1.

Training blocks are masked afresh at every batch (dynamic masking, as RoBERTa): from torch's
own random stream, which checkpoints save, so a resumed run draws the same masks. Validation
and test blocks are masked once, from the seed, so every evaluation scores the same task.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from msr.data.batching import IGNORE, EncodedSplit


@dataclass
class Masking:
    mask_id: int
    ordinary: torch.Tensor  # the ids a random replacement is drawn from: every symbol but the specials
    rate: float = 0.15
    mask_token: float = 0.8
    random_token: float = 0.1

    @classmethod
    def of(cls, tokenizer, cfg) -> "Masking":
        """For a tokenizer with <mask> and the pretrain.* options."""
        special = set(tokenizer.special_ids())
        ordinary = torch.tensor([i for i in range(tokenizer.vocab_size) if i not in special])
        return cls(tokenizer.mask_id, ordinary, cfg.mask_rate, cfg.mask_token, cfg.random_token)

    def chosen_per_row(self, length: int) -> int:
        return min(max(1, round(self.rate * length)), length)

    def __call__(self, tokens: torch.Tensor, generator: torch.Generator | None = None):
        """(inputs, labels) of blocks `tokens` [B, L]; `generator` None draws from torch's own stream."""
        B, L = tokens.shape
        device = tokens.device if generator is None else "cpu"  # a seeded Generator lives on the CPU
        order = torch.rand(B, L, generator=generator, device=device).argsort(dim=1)[:, : self.chosen_per_row(L)]
        chosen = torch.zeros(B, L, dtype=torch.bool, device=device).scatter_(1, order, True)
        draw = torch.rand(B, L, generator=generator, device=device)
        to_mask = chosen & (draw < self.mask_token)
        to_random = chosen & (draw >= self.mask_token) & (draw < self.mask_token + self.random_token)
        pick = torch.randint(len(self.ordinary), (B, L), generator=generator, device=device)
        original = tokens.to(device)
        inputs = torch.where(to_mask, self.mask_id, torch.where(to_random, self.ordinary.to(device)[pick], original))
        labels = torch.where(chosen, original, IGNORE)
        return inputs.to(tokens.device), labels.to(tokens.device)


@dataclass
class MaskedSplit(EncodedSplit):
    """Blocks masked afresh at every batch. `inputs` holds the unmasked blocks; `labels` holds one
    masking of them: each row has the count of targets every masking gives it, which is what the
    training loop reads from labels (to weigh micro-batches) before it asks for a batch."""

    masking: Masking | None = None

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, _ = super().batch(index)
        return self.masking(tokens)


def masked_splits(data: dict[str, EncodedSplit], masking: Masking, seed: int) -> dict[str, EncodedSplit]:
    """Packed language-model blocks (`pack`) as masked-LM data: train masked at each batch, the
    held-out splits once (each from its own seeded stream, apart from training's)."""
    masked = {}
    for i, (split, packed) in enumerate(data.items()):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + 17 + i)
        inputs, labels = masking(packed.inputs.cpu(), generator)
        device = packed.inputs.device
        if split == "train":
            masked[split] = MaskedSplit(packed.inputs, labels.to(device), packed.lengths, packed.steps,
                                        packed.unknown_tokens, masking)
        else:
            masked[split] = replace(packed, inputs=inputs.to(device), labels=labels.to(device))
    return masked
