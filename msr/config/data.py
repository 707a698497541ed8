"""data/: the built-in tasks, each with its own schema, and examples read from files."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from enum import Enum
from typing import List

from omegaconf import MISSING

from msr.config.base import Validated, fraction, non_negative, positive_ints, require
from msr.errors import ConfigError


class TokenizerKind(str, Enum):
    word = "word"  # whitespace-separated words: the built-in tasks and SCAN
    char = "char"  # every character a token: corpora such as Tiny Shakespeare
    bpe = "bpe"  # byte-level BPE learned on the training split: free text such as GSM8K


@dataclass
class DataConfig(Validated):
    """What every data option shares: how its examples are presented and tokenized."""

    name: str = MISSING
    template: str = "{input}"  # wraps each input, e.g. "Question: {input} Answer:"
    scratchpad: bool = False  # target = "<intermediate steps> #### <answer>" where the data has steps
    tokenizer: TokenizerKind = TokenizerKind.word
    vocab_size: int = 2000  # bpe only: merges stop at this many tokens
    block_size: int = 256  # msr pretrain: tokens per packed training sequence
    block_stride: int = 0  # msr pretrain: tokens between training blocks' starts; 0: block_size (no overlap)

    def check(self, p: str) -> None:
        positive_ints(self, p, "block_size")
        non_negative(p + "block_stride", self.block_stride)
        fields_used = {f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None}
        require(fields_used == {"input"}, p + "template", self.template,
                "a text with {input} and no other {field}, e.g. 'Question: {input} Answer:'")
        require(self.vocab_size >= 300, p + "vocab_size", self.vocab_size,
                "must be >= 300 (256 bytes plus special tokens and merges)")


@dataclass
class SplitConfig(Validated):
    size: int = 1000
    min_steps: int = 1
    max_steps: int = 4

    def check(self, p: str) -> None:
        positive_ints(self, p, "size")
        require(self.min_steps >= 1, p + "min_steps", self.min_steps, "must be >= 1")
        require(self.max_steps >= self.min_steps, p + "max_steps", self.max_steps,
                f"must be >= {p}min_steps={self.min_steps}")


@dataclass
class TaskConfig(DataConfig):
    """A built-in task: its own seed and a size and step range per split."""

    seed: int = 1234  # the data's own seed: changing the model seed keeps the same data
    train: SplitConfig = field(default_factory=lambda: SplitConfig(size=20000))
    val: SplitConfig = field(default_factory=lambda: SplitConfig(size=300))
    test: SplitConfig = field(default_factory=lambda: SplitConfig(size=600))

    def check(self, p: str) -> None:
        super().check(p)
        self.check_name(p)


@dataclass
class ArithmeticTaskConfig(TaskConfig):
    modulus: int = 10
    operators: str = "+-*"

    def check(self, p: str) -> None:
        super().check(p)
        require(self.modulus >= 2, p + "modulus", self.modulus, "must be >= 2")
        require(len(self.operators) > 0 and set(self.operators) <= set("+-*"), p + "operators",
                self.operators, "a non-empty string of the characters + - *")


@dataclass
class ArithConfig(ArithmeticTaskConfig):
    """Chained arithmetic evaluated left to right, answer modulo `modulus`."""

    name: str = "arith"


@dataclass
class ChainConfig(ArithmeticTaskConfig):
    """Variable binding: follow assignments back from the queried variable to a constant."""

    name: str = "chain"
    modulus: int = 100
    distractors: int = 2  # assignments that the query does not depend on

    def check(self, p: str) -> None:
        super().check(p)
        non_negative(p + "distractors", self.distractors)
        rule = "the variables are the 26 letters: max_steps + 1 + distractors must be <= 26"
        # distractors beyond 24 leave no room for even one step; below that, the split asking
        # for too many steps is the one to blame
        require(self.distractors <= 24, p + "distractors", self.distractors, f"must be <= 24 ({rule})")
        limit = 25 - self.distractors
        longest = max(("train", "val", "test"), key=lambda split: getattr(self, split).max_steps)
        steps = getattr(self, longest).max_steps
        require(steps <= limit, f"{p}{longest}.max_steps", steps,
                f"must be <= {limit} for chain with {p}distractors={self.distractors} ({rule})")


@dataclass
class LogicConfig(TaskConfig):
    """Facts and rules in words; label True / False / Unknown (open world); steps = rule applications."""

    name: str = "logic"
    distractors: int = 3  # facts and rules about attributes off the query's chain

    def check(self, p: str) -> None:
        from msr.data.tasks.logic import MAX_STEPS

        super().check(p)
        non_negative(p + "distractors", self.distractors)
        for split in ("train", "val", "test"):
            steps = getattr(self, split).max_steps
            require(steps <= MAX_STEPS, f"{p}{split}.max_steps", steps, f"must be <= {MAX_STEPS} for logic")


@dataclass
class KinshipConfig(TaskConfig):
    """A story of family relations; how is the last person related to the first? steps = relations."""

    name: str = "kinship"

    def check(self, p: str) -> None:
        from msr.data.tasks.kinship import MAX_STEPS

        super().check(p)
        for split in ("train", "val", "test"):
            steps = getattr(self, split).max_steps
            require(steps <= MAX_STEPS, f"{p}{split}.max_steps", steps, f"must be <= {MAX_STEPS} for kinship")


class FileFormat(str, Enum):
    jsonl = "jsonl"
    json = "json"
    csv = "csv"
    parquet = "parquet"
    text = "text"  # one example per line, cut by `pattern`; without a pattern, a corpus
    arrow = "arrow"  # a folder written by datasets' save_to_disk


class Preprocess(str, Enum):
    none = "none"
    scan = "scan"  # steps = composition words (and, after, twice, thrice, around, opposite)
    gsm8k = "gsm8k"  # solution lines = scratchpad and steps, the number after #### = target


@dataclass
class FilesConfig(DataConfig):
    """Examples read from files (or the Hugging Face hub), mapped onto input/target/steps."""

    name: str = "files"  # a label for logs and run summaries
    path: str = ""  # a file, or a folder holding the split files
    hub: str = ""  # or a data set name for datasets.load_dataset (needs network access)
    hub_config: str = ""
    format: FileFormat = FileFormat.jsonl
    train_file: str = ""  # inside `path`; empty: train.<format> (or `path` itself when it is a file)
    val_file: str = ""  # empty: val.<format> if present, else carved from train by val_ratio
    test_file: str = ""  # empty: test.<format> if present, else carved from train by test_ratio
    input_field: str = "input"
    target_field: str = "target"
    steps_field: str = "steps"  # used when present; empty = steps unknown
    scratchpad_field: str = "scratchpad"
    pattern: str = ""  # text format: a regex with groups (?P<input>...) and (?P<target>...) per line
    preprocess: Preprocess = Preprocess.none
    val_ratio: float = 0.1
    test_ratio: float = 0.1
    seed: int = 1234  # shuffles train before val/test are carved from it

    def check(self, p: str) -> None:
        super().check(p)
        require(bool(self.path) != bool(self.hub), p + "path", self.path or None,
                "set exactly one of data.path (local files) and data.hub (a hub data set name)")
        for key in ("val_ratio", "test_ratio"):
            fraction(p + key, getattr(self, key))
        require(self.val_ratio + self.test_ratio < 1, p + "test_ratio", self.test_ratio,
                f"data.val_ratio + data.test_ratio must be < 1 (val_ratio is {self.val_ratio})")
        if self.pattern:
            try:
                groups = set(re.compile(self.pattern).groupindex)
            except re.error as err:
                raise ConfigError(p + "pattern", self.pattern, f"a valid regular expression ({err})") from None
            require({"input", "target"} <= groups, p + "pattern", self.pattern,
                    "needs named groups (?P<input>...) and (?P<target>...)")

    @property
    def is_corpus(self) -> bool:
        """Plain text without a line pattern: language-modelling text, not input/target pairs."""
        return self.format == FileFormat.text and not self.pattern


@dataclass
class ScanConfig(FilesConfig):
    """SCAN (Lake & Baroni 2018): ${paths.data}/scan's text files, a pair a line ("IN: jump twice OUT:
    I_JUMP I_JUMP"); steps = composition words (and, after, twice, thrice, around, opposite); val
    is carved from train. Each split of the benchmark (data/scan_*.yaml) names its own files."""

    name: str = MISSING
    path: str = "${paths.data}/scan"
    format: FileFormat = FileFormat.text
    pattern: str = "IN: (?P<input>.*) OUT: (?P<target>.*)"
    preprocess: Preprocess = Preprocess.scan
    val_ratio: float = 0.05


LISTOPS_OPERATORS = ("MAX", "MIN", "MED", "SM")


@dataclass
class ListOpsConfig(TaskConfig):
    """Nested MAX/MIN/MED/SM lists; steps = nesting depth."""

    name: str = "listops"
    operators: List[str] = field(default_factory=lambda: list(LISTOPS_OPERATORS))
    max_arity: int = 4  # arguments per list: 2..max_arity
    subtree_prob: float = 0.2  # chance that an argument off the deepest branch is a list itself

    def check(self, p: str) -> None:
        super().check(p)
        require(len(self.operators) > 0 and set(self.operators) <= set(LISTOPS_OPERATORS), p + "operators",
                list(self.operators), f"a non-empty list drawn from {list(LISTOPS_OPERATORS)}")
        require(self.max_arity >= 2, p + "max_arity", self.max_arity, "must be >= 2")
        fraction(p + "subtree_prob", self.subtree_prob)
