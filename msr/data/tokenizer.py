"""Vocabularies built from the training split, kept as a `tokenizers` tokenizer.json.

Three kinds: `word` (whitespace-separated words), `char` (every character, spaces and newlines
included) and `bpe` (byte-level BPE trained on the split: no symbol is ever unknown). The same
file is saved with every checkpoint, so evaluation and generation always see the training
vocabulary; for word and char, symbols it has never seen map to <unk> and are counted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from msr.errors import UserError

PAD, UNK, SEP, EOS = "<pad>", "<unk>", "<sep>", "<eos>"
SPECIALS = (PAD, UNK, SEP, EOS)
MASK = "<mask>"  # only in the vocabularies of masked-LM pretraining (and what is fine-tuned from them)
SPECIAL = re.compile("|".join(map(re.escape, (*SPECIALS, MASK))))


class TextTokenizer:
    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.pad_id, self.unk_id, self.sep_id, self.eos_id = (tokenizer.token_to_id(t) for t in SPECIALS)
        if None in (self.pad_id, self.unk_id, self.sep_id, self.eos_id):
            raise ValueError(f"tokenizer lacks one of the special tokens {SPECIALS}")
        self.mask_id = tokenizer.token_to_id(MASK)  # None unless with_mask() added it

    @classmethod
    def build(cls, texts: Iterable[str], kind: str = "word", vocab_size: int = 2000) -> "TextTokenizer":
        if kind == "bpe":
            return cls(_bpe(texts, vocab_size))
        texts = (SPECIAL.sub(" " if kind == "word" else "", text) for text in texts)  # <eos> is one token
        if kind == "char":
            symbols = {ch for text in texts for ch in text}
            split = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
            decoder = decoders.Fuse()  # characters join without spaces
        elif kind == "word":
            symbols = {word for text in texts for word in text.split()}
            split, decoder = pre_tokenizers.WhitespaceSplit(), None
        else:
            raise ValueError(f"unknown tokenizer kind {kind!r}")
        vocab = {token: i for i, token in enumerate([*SPECIALS, *sorted(symbols - set(SPECIALS))])}
        tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
        tokenizer.pre_tokenizer = split
        if decoder is not None:
            tokenizer.decoder = decoder
        tokenizer.add_special_tokens(list(SPECIALS))  # same ids; now skipped by decode()
        return cls(tokenizer)

    @classmethod
    def load(cls, path: str | Path) -> "TextTokenizer":
        """A saved tokenizer.json; one that is missing, damaged or not msr's is the user's to fix."""
        if not Path(path).is_file():
            raise UserError(f"{path} does not exist; a run's checkpoint folder holds its tokenizer.json")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as err:  # tokenizers raises a bare Exception for a file it cannot parse
            raise UserError(f"{path} is not a tokenizer file ({first_line(err)})") from None
        try:
            return cls(tokenizer)
        except ValueError as err:
            raise UserError(f"{path}: {err}") from None

    def extend(self, texts: Iterable[str]) -> tuple["TextTokenizer", list[str]]:
        """This vocabulary plus the symbols of `texts` it lacks, appended so that every old id
        keeps its meaning; and those new symbols. Byte-level BPE lacks none."""
        vocab = self.tokenizer.get_vocab()
        if not isinstance(self.tokenizer.model, models.WordLevel):
            return self, []
        split = self.tokenizer.pre_tokenizer
        new = sorted({piece for text in texts for piece, _ in split.pre_tokenize_str(text)} - vocab.keys())
        if not new:
            return self, []
        extended = Tokenizer(models.WordLevel(vocab={**vocab, **{s: len(vocab) + i for i, s in enumerate(new)}},
                                              unk_token=UNK))
        extended.pre_tokenizer = split
        if self.tokenizer.decoder is not None:
            extended.decoder = self.tokenizer.decoder
        extended.add_special_tokens([*SPECIALS, *([MASK] if self.mask_id is not None else [])])
        return TextTokenizer(extended), new

    def with_mask(self) -> "TextTokenizer":
        """This vocabulary with <mask> appended (masked-LM pretraining): every other id unchanged."""
        if self.mask_id is not None:
            return self
        tokenizer = Tokenizer.from_str(self.tokenizer.to_str())
        tokenizer.add_special_tokens([MASK])
        return TextTokenizer(tokenizer)

    def special_ids(self) -> list[int]:
        """The ids that are not text: <pad>, <unk>, <sep>, <eos> and, where there is one, <mask>."""
        ids = [self.pad_id, self.unk_id, self.sep_id, self.eos_id]
        return ids + ([self.mask_id] if self.mask_id is not None else [])

    def to_str(self) -> str:
        return self.tokenizer.to_str()

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text; a text that repeats (a label, a common target) is encoded once."""
        unique = list(dict.fromkeys(texts))
        encoded = [e.ids for e in self.tokenizer.encode_batch(unique, add_special_tokens=False)]
        if len(unique) == len(texts):
            return encoded
        ids = dict(zip(unique, encoded))
        return [ids[text] for text in texts]

    def decode(self, ids: list[int], special_tokens: bool = False) -> str:
        """The text of `ids`; special tokens (<eos>, ...) dropped unless `special_tokens`."""
        return self.tokenizer.decode(ids, skip_special_tokens=not special_tokens)


def _bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
