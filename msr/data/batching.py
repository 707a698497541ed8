"""Examples as padded tensors, and the batches the training loop draws from them.

Each example is one causal-LM sequence `input <sep> target <eos>`. `inputs` are the tokens fed
to the model and `labels` the next tokens, with -100 (ignored by cross-entropy) everywhere
except where the model must produce the target and the final <eos>: the supervised loss counts
target tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from msr.data.tokenizer import TextTokenizer

IGNORE = -100


@dataclass
class EncodedSplit:
    inputs: torch.Tensor  # [N, L] long, right-padded with <pad>; on the training device
    labels: torch.Tensor  # [N, L] long, IGNORE outside the target; on the training device
    lengths: torch.Tensor  # [N] tokens in `inputs` that are not padding; always on the CPU
    steps: torch.Tensor  # [N] reasoning steps, -1 where unknown; always on the CPU
    unknown_tokens: int  # input/target symbols the vocabulary did not have

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows `index` (a CPU tensor), cut to the longest of them so short batches do not pay
        for padding. The width comes from CPU lengths, so no device sync is needed."""
        width = int(self.lengths[index].max())
        index = index.to(self.inputs.device)
        return self.inputs[index, :width], self.labels[index, :width]

    def to(self, device) -> "EncodedSplit":
        return replace(self, inputs=self.inputs.to(device), labels=self.labels.to(device))


def encode(records: list[dict], tokenizer: TextTokenizer) -> EncodedSplit:
    sources = tokenizer.encode_batch([r["input"] for r in records])
    targets = tokenizer.encode_batch([r["target"] for r in records])
    sequences = [s + [tokenizer.sep_id] + t + [tokenizer.eos_id] for s, t in zip(sources, targets)]
    width = max(len(seq) for seq in sequences) - 1
    pad = tokenizer.pad_id
    # label i is token i+1, so the first target label sits at <sep>, i.e. at len(source)
    inputs = [seq[:-1] + [pad] * (width + 1 - len(seq)) for seq in sequences]
    labels = [
        [IGNORE] * len(src) + seq[len(src) + 1 :] + [IGNORE] * (width + 1 - len(seq))
        for seq, src in zip(sequences, sources)
    ]
    unknown = sum(ids.count(tokenizer.unk_id) for ids in (*sources, *targets))
    return EncodedSplit(
        inputs=torch.tensor(inputs, dtype=torch.long),
        labels=torch.tensor(labels, dtype=torch.long),
        lengths=torch.tensor([len(seq) - 1 for seq in sequences]),
        steps=torch.tensor([r.get("steps", -1) for r in records]),
        unknown_tokens=unknown,
    )


class BatchOrder:
    """Shuffled batches, epoch after epoch; batch k is a pure function of (seed, k).

    Deriving the order from the step number means a resumed run sees exactly the batches
    an uninterrupted one would have.
    """

    def __init__(self, size: int, batch_size: int, seed: int):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.per_epoch = max(size // batch_size, 1)  # the last partial batch is dropped
        self._epoch, self._perm = -1, None

    def __call__(self, k: int) -> torch.Tensor:
        epoch, offset = divmod(k, self.per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.size, generator=generator)
        start = offset * self.batch_size
        return self._perm[start : start + self.batch_size]
