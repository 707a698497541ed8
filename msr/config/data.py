"""data/: the built-in tasks, each with its own schema, and examples read from files."""

from __future__ import annotations

import re
import string
from dataclasses import asdict, dataclass, field
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
    folds: int = 0  # k-fold cross-validation: K >= 2 cuts the training split into K folds by input; 0: off
    fold: int = 0  # with data.folds=K: this fold of train is the val split (msr/data/folds.py)

    def check(self, p: str) -> None:
        positive_ints(self, p, "block_size")
        non_negative(p + "block_stride", self.block_stride)
        self.check_folds(p)
        fields_used = {f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None}
        require(fields_used == {"input"}, p + "template", self.template,
                "a text with {input} and no other {field}, e.g. 'Question: {input} Answer:'")
        require(self.vocab_size >= 300, p + "vocab_size", self.vocab_size,
                "must be >= 300 (256 bytes plus special tokens and merges)")

    def check_folds(self, p: str) -> None:
        require(self.folds == 0 or self.folds >= 2, p + "folds", self.folds,
                "must be >= 2 (each fold in turn is the val split; one fold would leave no training data), "
                "or 0 for no folds")
        if self.folds == 0:
            require(self.fold == 0, p + "fold", self.fold, f"a fold needs {p}folds=K (K >= 2) beside it")
            return
        require(0 <= self.fold < self.folds, p + "fold", self.fold,
                f"must be in [0, {self.folds - 1}] with {p}folds={self.folds}; "
                f"all of them: -m {p}fold=range({self.folds})")
        require(not getattr(self, "is_corpus", False), p + "folds", self.folds,
                "a text corpus has no examples to fold: use data with input/target pairs, or data.folds=0")


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


HINT_LETTERS = ("sorted", "consecutive")


@dataclass
class ArithConfig(ArithmeticTaskConfig):
    """Chained arithmetic evaluated left to right, answer modulo `modulus`."""

    name: str = "arith"
    # each operator follows a hint letter, A-Z in order, and each scratchpad value its operator's
    # letter (Zhou et al., 2023): a step finds its operands by content
    index_hints: bool = False
    # which letters: "sorted" (a random subset per example) or "consecutive" (a run of letters from
    # a random start, so the next letter is the alphabet's next, at any length)
    hint_letters: str = "sorted"
    # the scratchpad walks the input: the first operand, each step copied before its value
    # ("B + 5 2"), then "=": a value depends on tokens at fixed distances, the stop is copied
    scratchpad_operands: bool = False

    def check(self, p: str) -> None:
        super().check(p)
        require(self.hint_letters in HINT_LETTERS, p + "hint_letters", self.hint_letters,
                f"one of {', '.join(HINT_LETTERS)}")
        if self.index_hints:
            longest = max(getattr(self, split).max_steps for split in ("train", "val", "test"))
            require(longest <= 26, p + "index_hints", self.index_hints,
                    f"gives each operator one of 26 letters, but a split asks for {longest} steps: "
                    f"keep max_steps <= 26 or set {p}index_hints=false")


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
    scan_structured = "scan_structured"  # as scan, and the target marks each repeated unit's end
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


@dataclass
class MixtureSplitConfig(Validated):
    size: int = 1000  # rows of this split, shared out among the tasks by weight

    def check(self, p: str) -> None:
        positive_ints(self, p, "size")


MIXABLE = ("arith", "chain", "listops", "logic", "kinship")  # MixtureConfig's task fields
# the mixture's own keys that decide how its tasks' examples look: set once for the whole mixture
MIXTURE_WIDE = ("template", "scratchpad", "tokenizer", "vocab_size", "block_size", "block_stride", "folds", "fold")


@dataclass
class MixtureConfig(DataConfig):
    """Built-in tasks drawn together into one data set with one vocabulary: each task keeps its own
    settings under its name (data.arith.train.max_steps=6), and each split of the mixture gives
    the tasks rows in proportion to their weights (largest remainder: exact, reproducible counts).
    Every row carries its `task`; metrics.json then holds accuracy_by_task and accuracy_by_task_steps."""

    name: str = "mixture"
    tasks: List[str] = field(default_factory=lambda: ["arith", "logic", "kinship"])
    weights: List[float] = field(default_factory=list)  # one per task; empty: equal weights
    seed: int = 1234  # interleaves the tasks' rows within each split
    train: MixtureSplitConfig = field(default_factory=lambda: MixtureSplitConfig(size=20000))
    val: MixtureSplitConfig = field(default_factory=lambda: MixtureSplitConfig(size=300))
    test: MixtureSplitConfig = field(default_factory=lambda: MixtureSplitConfig(size=600))
    # one field per built-in task, named as the task: only those in `tasks` are drawn
    arith: ArithConfig = field(default_factory=ArithConfig)
    chain: ChainConfig = field(default_factory=ChainConfig)
    listops: ListOpsConfig = field(default_factory=ListOpsConfig)
    logic: LogicConfig = field(default_factory=LogicConfig)
    kinship: KinshipConfig = field(default_factory=KinshipConfig)

    def task_weights(self) -> list[float]:
        return list(self.weights) if self.weights else [1.0] * len(self.tasks)

    def rows(self, split: str) -> dict[str, int]:
        """Each task's rows in `split`: size * weight / sum(weights), rounded by largest remainder
        (floors first, then one more row each to the largest fractions, ties to the earlier task),
        so the counts add up to the split's size exactly. Tasks of weight 0 get none."""
        size, weights = getattr(self, split).size, self.task_weights()
        exact = [size * w / sum(weights) for w in weights]
        counts = [int(x) for x in exact]
        by_remainder = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
        for i in by_remainder[: size - sum(counts)]:
            counts[i] += 1
        return dict(zip(self.tasks, counts))

    def check(self, p: str) -> None:
        super().check(p)
        self.check_name(p)
        known = ", ".join(MIXABLE)
        require(len(self.tasks) > 0, p + "tasks", list(self.tasks), f"name at least one task of: {known}")
        for task in self.tasks:
            require(task in MIXABLE, p + "tasks", list(self.tasks), f"{task!r} is not a built-in task; known: {known}")
            require(list(self.tasks).count(task) == 1, p + "tasks", list(self.tasks),
                    f"{task!r} is named twice; name each task once and give it more weight in {p}weights")
        require(not self.weights or len(self.weights) == len(self.tasks), p + "weights", list(self.weights),
                f"give one weight per task of {p}tasks={list(self.tasks)} ({len(self.tasks)}), "
                "or none for equal weights")
        require(all(w >= 0 for w in self.weights), p + "weights", list(self.weights), "weights must be >= 0")
        require(sum(self.task_weights()) > 0, p + "weights", list(self.weights), "at least one weight must be > 0")
        for task in MIXABLE:
            self.check_task(p, task)
        for split in ("train", "val", "test"):
            starved = [t for (t, n), w in zip(self.rows(split).items(), self.task_weights()) if n == 0 and w > 0]
            require(not starved, f"{p}{split}.size", getattr(self, split).size,
                    f"too few rows to give {', '.join(starved)} any at {p}weights={self.task_weights()}; raise it")

    def check_task(self, p: str, task: str) -> None:
        """A task's own keys may change only what it generates: sizes come from the mixture's
        splits and weights, presentation from the mixture's own keys; a task not drawn is left alone."""
        mine, default = asdict(getattr(self, task)), asdict(type(getattr(self, task))())
        if task not in self.tasks:
            for key in (k for k in mine if mine[k] != default[k]):
                raise ConfigError(f"{p}{task}.{key}", mine[key], f"{task} is not in {p}tasks={list(self.tasks)}: "
                                  "add it there, or leave its keys alone")
            return
        for split in ("train", "val", "test"):
            size = mine[split]["size"]
            require(size == default[split]["size"], f"{p}{task}.{split}.size", size,
                    f"a mixture shares {p}{split}.size out among its tasks by {p}weights: set those instead")
        for key in MIXTURE_WIDE:
            require(mine[key] == default[key], f"{p}{task}.{key}", mine[key],
                    f"one vocabulary and presentation for the whole mixture: set {p}{key} instead")

