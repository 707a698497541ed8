"""Examples as padded tensors, and the batches the training loop draws from them.

Each example is one causal-LM sequence `input <sep> target <eos>`. `inputs` are the tokens fed
to the model and `labels` the next tokens, with -100 (ignored by cross-entropy) everywhere
except where the model must produce the target and the final <eos>: the supervised loss counts
target tokens only.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
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
    # numpy does the padding and masking: building 100k padded rows in Python took seconds
    n = np.array([len(seq) for seq in sequences])
    tokens = np.fromiter(itertools.chain.from_iterable(sequences), dtype=np.int64, count=int(n.sum()))
    position = np.arange(n.max())
    padded = np.full((len(sequences), n.max()), tokenizer.pad_id, dtype=np.int64)
    padded[position < n[:, None]] = tokens
    inputs, labels = padded[:, :-1].copy(), padded[:, 1:].copy()
    position, last = position[:-1], (n - 1)[:, None]  # label i is token i+1
    inputs[position >= last] = tokenizer.pad_id
    source_length = np.array([len(s) for s in sources])[:, None]  # the first target label sits at <sep>
    labels[(position < source_length) | (position >= last)] = IGNORE
    return EncodedSplit(
        inputs=torch.from_numpy(inputs),
        labels=torch.from_numpy(labels),
        lengths=torch.from_numpy(n - 1),
        steps=torch.tensor([r.get("steps", -1) for r in records]),
        unknown_tokens=int((tokens == tokenizer.unk_id).sum()),
    )


def pack(ids: list[int], block_size: int, stride: int = 0) -> EncodedSplit:
    """A token stream as blocks for language modelling: block i reads tokens [i*S, i*S + B) and
    predicts each next one. With the stride S = B (the default) every token is a label exactly
    once; a smaller stride gives overlapping blocks, like nanoGPT's random offsets."""
    stream = torch.tensor(ids, dtype=torch.long)
    windows = stream.unfold(0, block_size + 1, stride or block_size)  # [N, B+1]
    n = windows.shape[0]
    return EncodedSplit(inputs=windows[:, :-1].contiguous(), labels=windows[:, 1:].contiguous(),
                        lengths=torch.full((n,), block_size), steps=torch.full((n,), -1), unknown_tokens=0)


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
