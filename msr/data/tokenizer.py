"""Word-level vocabulary built from the training split, kept as a `tokenizers` tokenizer.json.

The same file is saved with every checkpoint, so evaluation and generation always see the
training vocabulary; symbols it has never seen map to <unk>.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, models, pre_tokenizers

PAD, UNK, SEP, EOS = "<pad>", "<unk>", "<sep>", "<eos>"
SPECIALS = (PAD, UNK, SEP, EOS)


class TextTokenizer:
    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.pad_id, self.unk_id, self.sep_id, self.eos_id = (tokenizer.token_to_id(t) for t in SPECIALS)
        if None in (self.pad_id, self.unk_id, self.sep_id, self.eos_id):
            raise ValueError(f"tokenizer lacks one of the special tokens {SPECIALS}")

    @classmethod
    def build(cls, texts: Iterable[str]) -> "TextTokenizer":
        words = sorted({word for text in texts for word in text.split()} - set(SPECIALS))
        vocab = {token: i for i, token in enumerate([*SPECIALS, *words])}
        tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tokenizer.add_special_tokens(list(SPECIALS))  # same ids; now skipped by decode()
        return cls(tokenizer)

    @classmethod
    def load(cls, path: str | Path) -> "TextTokenizer":
        return cls(Tokenizer.from_file(str(path)))

    def to_str(self) -> str:
        return self.tokenizer.to_str()

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)
