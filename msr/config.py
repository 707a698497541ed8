"""Typed config schemas, registered with Hydra's ConfigStore.

The YAML files in conf/ pick values; these dataclasses say which keys exist and of which
type (OmegaConf refuses the rest while composing), and `validate()` checks the ranges that a
type cannot express. Both run before any work, so a bad value never costs a training run.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any, List

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from msr.errors import ConfigError, UserError


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(key, value, allowed)


def positive(key: str, value: float) -> None:
    require(value > 0, key, value, "must be > 0")


def non_negative(key: str, value: float) -> None:
    require(value >= 0, key, value, "must be >= 0")


def positive_ints(node: Any, prefix: str, *keys: str) -> None:
    for key in keys:
        value = getattr(node, key)
        require(value >= 1, prefix + key, value, "must be a positive integer")


def fraction(key: str, value: float) -> None:
    require(0 <= value < 1, key, value, "must be in [0, 1)")


class Validated:
    """A schema whose `validate(prefix)` checks its nested schemas, then its own fields."""

    def check_name(self, p: str) -> None:
        """`name` says which option of a group this is; changing it alone would switch code paths
        without the option's keys, so it must stay the schema's own."""
        expected = type(self).__dataclass_fields__["name"].default  # type: ignore[attr-defined]
        require(self.name == expected, p + "name", self.name,  # type: ignore[attr-defined]
                f"must be {expected}; choose another option with {p.rstrip('.')}=<option>")

    def check(self, prefix: str) -> None:
        """Range checks of this node's own fields; `prefix` names the node in messages."""

    def validate(self, prefix: str = "") -> None:
        # children first: a node's checks across its parts (batch size against train size) may
        # then trust each part, and a bad value is blamed on its own key, not on a neighbour's
        for f in fields(self):  # type: ignore[arg-type]
            child = getattr(self, f.name)
            if isinstance(child, Validated):
                child.validate(f"{prefix}{f.name}.")
        self.check(prefix)


# --- model/ ----------------------------------------------------------------------------------


class Positions(str, Enum):
    learned = "learned"
    sinusoidal = "sinusoidal"


@dataclass
class RecurrentConfig(Validated):
    name: str = "lstm"  # rnn | lstm | gru
    embedding_size: int = 128
    hidden_size: int = 256
    num_layers: int = 1
    dropout: float = 0.0
    tie_embeddings: bool = False

    def check(self, p: str) -> None:
        require(self.name in ("rnn", "lstm", "gru"), p + "name", self.name, "one of rnn, lstm, gru")
        positive_ints(self, p, "embedding_size", "hidden_size", "num_layers")
        fraction(p + "dropout", self.dropout)
        require(
            not self.tie_embeddings or self.embedding_size == self.hidden_size,
            p + "tie_embeddings", self.tie_embeddings,
            f"tied embeddings need model.embedding_size == model.hidden_size "
            f"(now {self.embedding_size} and {self.hidden_size})",
        )


@dataclass
class TransformerConfig(Validated):
    name: str = "transformer"
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 512
    dropout: float = 0.0
    positions: Positions = Positions.learned
    max_len: int = 256
    tie_embeddings: bool = True
    share_layers: bool = False  # one block applied n_layers times (Universal Transformer)

    def check(self, p: str) -> None:
        self.check_name(p)
        positive_ints(self, p, "d_model", "n_layers", "n_heads", "d_ff", "max_len")
        require(self.d_model % self.n_heads == 0, p + "n_heads", self.n_heads,
                f"must divide model.d_model={self.d_model}")
        fraction(p + "dropout", self.dropout)


# --- optimizer/ ------------------------------------------------------------------------------


@dataclass
class OptimizerConfig(Validated):
    name: str = MISSING
    lr: float = 1e-3
    weight_decay: float = 0.0

    def check(self, p: str) -> None:
        self.check_name(p)
        positive(p + "lr", self.lr)
        non_negative(p + "weight_decay", self.weight_decay)


@dataclass
class SGDConfig(OptimizerConfig):
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False

    def check(self, p: str) -> None:
        super().check(p)
        fraction(p + "momentum", self.momentum)
        require(not self.nesterov or self.momentum > 0, p + "nesterov", self.nesterov,
                "Nesterov momentum needs optimizer.momentum > 0")


@dataclass
class AdamConfig(OptimizerConfig):
    name: str = "adam"
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8

    def check(self, p: str) -> None:
        super().check(p)
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), p + "betas",
                list(self.betas), "two numbers in [0, 1), e.g. [0.9,0.999]")
        positive(p + "eps", self.eps)


@dataclass
class AdamWConfig(AdamConfig):
    name: str = "adamw"
    weight_decay: float = 0.01


@dataclass
class AdadeltaConfig(OptimizerConfig):
    name: str = "adadelta"
    lr: float = 1.0
    rho: float = 0.9
    eps: float = 1e-6

    def check(self, p: str) -> None:
        super().check(p)
        fraction(p + "rho", self.rho)
        positive(p + "eps", self.eps)


@dataclass
class RMSpropConfig(OptimizerConfig):
    name: str = "rmsprop"
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0

    def check(self, p: str) -> None:
        super().check(p)
        fraction(p + "alpha", self.alpha)
        positive(p + "eps", self.eps)
        fraction(p + "momentum", self.momentum)


# --- scheduler/ ------------------------------------------------------------------------------


@dataclass
class SchedulerConfig(Validated):
    """Linear warmup from lr/warmup_steps to lr, then the named schedule over the rest."""

    name: str = "constant"
    warmup_steps: int = 0

    def check(self, p: str) -> None:
        self.check_name(p)
        non_negative(p + "warmup_steps", self.warmup_steps)


@dataclass
class DecayConfig(SchedulerConfig):
    """A schedule that decays to min_lr_ratio * optimizer.lr by the last step."""

    min_lr_ratio: float = 0.0

    def check(self, p: str) -> None:
        super().check(p)
        require(0 <= self.min_lr_ratio <= 1, p + "min_lr_ratio", self.min_lr_ratio, "must be in [0, 1]")


@dataclass
class CosineConfig(DecayConfig):
    name: str = "cosine"
    min_lr_ratio: float = 0.1


@dataclass
class LinearConfig(DecayConfig):
    name: str = "linear"


def decay_factor(key: str, value: float) -> None:
    require(0 < value <= 1, key, value, "must be in (0, 1]")


@dataclass
class StepConfig(SchedulerConfig):
    name: str = "step"
    step_size: int = 500  # multiply the lr by gamma every step_size steps
    gamma: float = 0.5

    def check(self, p: str) -> None:
        super().check(p)
        positive(p + "step_size", self.step_size)
        decay_factor(p + "gamma", self.gamma)


@dataclass
class ExponentialConfig(SchedulerConfig):
    name: str = "exponential"
    gamma: float = 0.999  # per step

    def check(self, p: str) -> None:
        super().check(p)
        decay_factor(p + "gamma", self.gamma)


# --- data/ -----------------------------------------------------------------------------------


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


# --- device/ and trainer ---------------------------------------------------------------------


class DeviceType(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


@dataclass
class DeviceConfig(Validated):
    type: DeviceType = DeviceType.auto


@dataclass
class EarlyStoppingConfig(Validated):
    monitor: str = "val/accuracy"
    patience: int = 0  # evaluations without improvement before stopping; 0 turns it off
    min_delta: float = 0.0

    def check(self, p: str) -> None:
        require(self.monitor in ("val/accuracy", "val/loss"), p + "monitor", self.monitor,
                "one of val/accuracy, val/loss")
        non_negative(p + "patience", self.patience)
        non_negative(p + "min_delta", self.min_delta)


@dataclass
class TrainerConfig(Validated):
    max_steps: int = 3000
    batch_size: int = 64
    grad_accum_steps: int = 1
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    l1: float = 0.0  # explicit penalties added to the loss, on top of optimizer weight decay
    l2: float = 0.0
    eval_every: int = 250
    eval_batch_size: int = 500
    log_every: int = 25
    precision: Precision = Precision.fp32
    compile: bool = False
    checkpoint_every: int = 0  # steps between checkpoints/last; 0: at every evaluation
    keep_last: int = 1  # step checkpoints kept (the newest is checkpoints/last), besides best
    skip_nonfinite: bool = False  # skip (and count) steps whose loss is NaN or inf instead of failing
    stop_at: int = 0  # pause after this step with checkpoints/last, as an interruption would; 0: run on
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)

    def check(self, p: str) -> None:
        positive_ints(self, p, "max_steps", "batch_size", "grad_accum_steps", "eval_every",
                      "eval_batch_size", "log_every", "keep_last")
        non_negative(p + "checkpoint_every", self.checkpoint_every)
        require(0 <= self.stop_at < self.max_steps, p + "stop_at", self.stop_at,
                f"must be 0 (run to the end) or a step before trainer.max_steps={self.max_steps}")
        for key in ("grad_clip", "l1", "l2"):
            non_negative(p + key, getattr(self, key))


@dataclass
class PathsConfig(Validated):
    data: str = "${oc.env:MSR_DATA,data}"  # root of the real data sets that data/*.yaml read
    cache: str = "${oc.env:MSR_CACHE,'~/.cache/msr'}"  # generated tasks and datasets' own cache


@dataclass
class TrainConfig(Validated):
    seed: int = 0
    model: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    data: Any = MISSING
    device: DeviceConfig = field(default_factory=DeviceConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    resume: str = ""  # a run folder to continue from its checkpoints/last, or auto

    def check(self, p: str) -> None:
        if isinstance(self.data, TaskConfig):
            train_size = self.data.train.size
            require(self.trainer.batch_size <= train_size, "trainer.batch_size", self.trainer.batch_size,
                    f"must be at most data.train.size={train_size}")
        warmup, steps = self.scheduler.warmup_steps, self.trainer.max_steps
        require(warmup < steps, "scheduler.warmup_steps", warmup,
                f"must be < trainer.max_steps={steps}: the warmup would take the whole run and the "
                f"schedule never start; lower scheduler.warmup_steps or raise trainer.max_steps")


class Strategy(str, Enum):
    greedy = "greedy"
    beam = "beam"
    sample = "sample"


@dataclass
class DecodeConfig(Validated):
    """How evaluate and generate turn a model's next-token distribution into text."""

    strategy: Strategy = Strategy.greedy
    max_new_tokens: int = 128  # stops earlier at <eos>
    beam_size: int = 4
    length_penalty: float = 1.0  # beams ranked by logprob / length**length_penalty
    temperature: float = 1.0  # sample only, like top_k and top_p
    top_k: int = 0  # 0: no limit
    top_p: float = 1.0  # nucleus: the fewest tokens holding this much probability
    num_return_sequences: int = 1
    self_consistency: int = 1  # > 1: sample this many answers, keep the majority (Wang et al. 2022)
    batch_size: int = 500  # sequences decoded at once

    def check(self, p: str) -> None:
        positive_ints(self, p, "max_new_tokens", "beam_size", "num_return_sequences", "self_consistency",
                      "batch_size")
        positive(p + "temperature", self.temperature)
        non_negative(p + "top_k", self.top_k)
        require(0 < self.top_p <= 1, p + "top_p", self.top_p, "must be in (0, 1]")
        if self.strategy == Strategy.beam:
            require(self.num_return_sequences <= self.beam_size, p + "num_return_sequences",
                    self.num_return_sequences, f"must be <= decode.beam_size={self.beam_size}")
        require(self.num_return_sequences == 1 or self.strategy != Strategy.greedy, p + "num_return_sequences",
                self.num_return_sequences, "needs decode.strategy=sample or decode.strategy=beam: greedy decoding "
                "has one answer per prompt, so the rows would be identical")
        require(self.self_consistency == 1 or self.strategy == Strategy.sample, p + "self_consistency",
                self.self_consistency, "needs decode.strategy=sample: a vote over identical answers decides nothing")


def check_runs(key: str, runs: Any) -> list[str]:
    """`run=RUN` or `run=[A,B,...]`: each a run folder or one of its checkpoint folders."""
    from pathlib import Path

    listed = [runs] if isinstance(runs, str) else list(runs)
    require(len(listed) > 0, key, runs, "a run folder, or a list of them for an ensemble: run=[A,B]")
    for run in listed:
        require(Path(run).is_dir(), key, run, "must be an existing run folder (outputs/train/<date>/<time>)")
    return listed


@dataclass
class EvaluateConfig(Validated):
    """`msr evaluate run=RUN`: score a run's checkpoint on a split of its data (or other data)."""

    run: Any = MISSING  # a run folder, or [A,B,...] for an ensemble
    checkpoint: str = "best"  # best | last
    split: str = "test"  # train | val | test
    limit: int = 0  # score only the first N examples; 0: all
    seed: int = 0  # for sampling
    data: Any = MISSING  # the run's own data unless overridden (msr fills it in from the run)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)

    def check(self, p: str) -> None:
        check_runs("run", self.run)
        require(self.checkpoint in ("best", "last"), "checkpoint", self.checkpoint, "one of best, last")
        require(self.split in ("train", "val", "test"), "split", self.split, "one of train, val, test")
        non_negative("limit", self.limit)


@dataclass
class GenerateConfig(Validated):
    """`msr generate run=RUN prompt=...`: continue prompts with a run's checkpoint."""

    run: Any = MISSING
    checkpoint: str = "best"
    prompt: str = ""
    prompts_file: str = ""  # one prompt per line
    seed: int = 0
    decode: DecodeConfig = field(default_factory=lambda: DecodeConfig(max_new_tokens=256))
    device: DeviceConfig = field(default_factory=DeviceConfig)

    def check(self, p: str) -> None:
        from pathlib import Path

        check_runs("run", self.run)
        require(self.checkpoint in ("best", "last"), "checkpoint", self.checkpoint, "one of best, last")
        require(bool(self.prompt) != bool(self.prompts_file), "prompt", self.prompt or None,
                "give exactly one of prompt=TEXT and prompts_file=FILE")
        require(not self.prompts_file or Path(self.prompts_file).is_file(), "prompts_file", self.prompts_file,
                "must be an existing file with one prompt per line")


@dataclass
class PretrainConfig(TrainConfig):
    """`msr pretrain`: next-token language modelling on a corpus (or a task's inputs)."""

    def check(self, p: str) -> None:
        super().check(p)
        monitor = self.trainer.early_stopping.monitor
        require(monitor == "val/loss", "trainer.early_stopping.monitor", monitor,
                "must be val/loss for a language model (no block of text is ever exactly right)")


FREEZE = re.compile(r"none|embeddings|all_but_head|lower:[1-9][0-9]*")


@dataclass
class LearningRateScale(Validated):
    """Discriminative learning rates: optimizer.lr times these, per part of the model."""

    embeddings: float = 1.0  # token embeddings and positions
    body: float = 1.0  # Transformer blocks or recurrent layers (the top one; see layer_decay)
    head: float = 1.0  # the output projection
    layer_decay: float = 1.0  # each body layer below the top gets this times the one above (ULMFiT)

    def check(self, p: str) -> None:
        for key in ("embeddings", "body", "head"):
            positive(p + key, getattr(self, key))
        require(0 < self.layer_decay <= 1, p + "layer_decay", self.layer_decay, "must be in (0, 1]")


@dataclass
class LoraConfig(Validated):
    """LoRA adapters (Hu et al., 2021) through peft; rank 0 trains the model's own weights."""

    rank: int = 0
    alpha: float = 16.0  # the update is scaled by alpha / rank
    dropout: float = 0.0
    target_modules: List[str] = field(default_factory=lambda: ["qkv", "proj", "mlp.0", "mlp.2"])

    def check(self, p: str) -> None:
        non_negative(p + "rank", self.rank)
        positive(p + "alpha", self.alpha)
        fraction(p + "dropout", self.dropout)
        require(len(self.target_modules) > 0, p + "target_modules", self.target_modules,
                "name at least one Linear layer, e.g. [qkv,proj]")


@dataclass
class TransferConfig(Validated):
    freeze: str = "none"  # none | embeddings | lower:N (embeddings and the N lowest layers) | all_but_head
    lr_scale: LearningRateScale = field(default_factory=LearningRateScale)
    lora: LoraConfig = field(default_factory=LoraConfig)

    def check(self, p: str) -> None:
        require(FREEZE.fullmatch(self.freeze) is not None, p + "freeze", self.freeze,
                "one of none, embeddings, lower:N, all_but_head")
        require(self.lora.rank == 0 or self.freeze == "none", p + "freeze", self.freeze,
                "must be none with LoRA (finetune.lora.rank > 0): the base weights are frozen already")


@dataclass
class FinetuneConfig(TrainConfig):
    """`msr finetune init=RUN`: supervised training that starts from a pretrained run."""

    init: str = MISSING  # the pretrained run folder (or one of its checkpoint folders)
    init_checkpoint: str = "best"  # best | last
    finetune: TransferConfig = field(default_factory=TransferConfig)

    def check(self, p: str) -> None:
        super().check(p)
        check_runs("init", self.init)
        layers = self.model.n_layers if isinstance(self.model, TransformerConfig) else self.model.num_layers
        freeze = self.finetune.freeze
        require(not freeze.startswith("lower:") or int(freeze[6:]) <= layers, "finetune.freeze", freeze,
                f"the model has {layers} layers")
        require(self.init_checkpoint in ("best", "last"), "init_checkpoint", self.init_checkpoint, "one of best, last")


@dataclass
class AugmentOptions(Validated):
    split: str = "train"  # the split to augment; the others are copied as they are
    ops: List[str] = field(default_factory=list)  # NAME or NAME:WEIGHT each; [] = every rewriting op that applies
    copies: int = 1  # new examples drawn per source example from the rewriting ops
    keep_original: bool = True  # the output split holds the source examples too
    teacher: str = ""  # a trained run, for pseudo_labels and adversarial
    pseudo_labels: int = 0  # unlabeled inputs to label with the teacher (drawn from a built-in task)
    confidence: float = 0.9  # keep a pseudo-label whose probability under the teacher is at least this
    adversarial: int = 0  # > 0: candidate edits tried per example; those that flip the teacher are kept
    edits: int = 2  # label-preserving operations chained in one adversarial candidate

    def check(self, p: str) -> None:
        require(self.split in ("train", "val", "test"), p + "split", self.split, "one of train, val, test")
        for op in self.ops:
            weight = op.partition(":")[2]
            require(re.fullmatch(r"\d+(\.\d*)?|\.\d+", weight or "1") is not None and float(weight or 1) > 0,
                    p + "ops", op, "each NAME or NAME:WEIGHT with a weight > 0, e.g. [swap_operands,perturb_numbers:2]")
        non_negative(p + "copies", self.copies)
        non_negative(p + "pseudo_labels", self.pseudo_labels)
        non_negative(p + "adversarial", self.adversarial)
        positive_ints(self, p, "edits")
        require(0 <= self.confidence <= 1, p + "confidence", self.confidence, "must be in [0, 1]")
        wants_teacher = self.pseudo_labels or self.adversarial
        require(self.keep_original or self.copies or wants_teacher, p + "copies", self.copies,
                f"with {p}keep_original=false and no teacher ({p}pseudo_labels, {p}adversarial) the {self.split} "
                f"split would hold no examples: ask for {p}copies >= 1 or keep the originals")
        require(bool(self.teacher) or not wants_teacher, p + "teacher", self.teacher or None,
                "pseudo-labels and adversarial search need a trained run: augment.teacher=RUN")
        if self.teacher:
            check_runs(p + "teacher", self.teacher)

    def weights(self) -> dict[str, float]:
        """{operation: weight} from ops' NAME[:WEIGHT] items."""
        return {op.partition(":")[0]: float(op.partition(":")[2] or 1) for op in self.ops}


@dataclass
class AugmentConfig(Validated):
    """`msr augment`: write an augmented copy of a data set, with each example's provenance."""

    seed: int = 0
    data: Any = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    augment: AugmentOptions = field(default_factory=AugmentOptions)

    def check(self, p: str) -> None:
        from msr.augment.operations import check_supported, label_preserving
        from msr.data.tasks import TASKS

        self.augment.check("augment.")  # its weights must parse before they are looked at here
        check_supported(self.augment.weights(), self.task)
        require(not self.augment.adversarial or bool(label_preserving(self.task)), "augment.adversarial",
                self.augment.adversarial,
                f"searches label-preserving edits, and data={self.task} has none (built-in tasks have)")
        require(not self.augment.pseudo_labels or self.task in TASKS, "augment.pseudo_labels",
                self.augment.pseudo_labels, f"draws fresh inputs from a built-in task's generator; data={self.task} "
                f"is not one")
        require(self.task in TASKS or self.augment.ops or not self.augment.copies, "augment.ops", "[]",
                f"name the text operations for data={self.task} (e.g. [random_swap,random_deletion]): they keep "
                f"each target as it is, which is right only where a few changed words leave the label unchanged")
        require(self.data.template == "{input}" and not self.data.scratchpad, "data.scratchpad",
                self.data.scratchpad, "msr augment writes examples as the task makes them: leave data.template "
                "and data.scratchpad out here, and set them when training on its output")

    @property
    def task(self) -> str:
        """The data's name: the operations know built-in tasks by theirs; any other is free text."""
        return self.data.name


@dataclass
class DataCommandConfig(Validated):
    """`msr data`: summarise the composed data set; `--export` also writes it as JSONL."""

    data: Any = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
    examples: int = 3  # shown per split
    export: bool = False  # write <run>/data/{train,val,test}.jsonl

    def check(self, p: str) -> None:
        non_negative("examples", self.examples)


SCHEMAS = {
    "train": TrainConfig,
    "pretrain": PretrainConfig,
    "finetune": FinetuneConfig,
    "data": DataCommandConfig,
    "augment": AugmentConfig,
    "evaluate": EvaluateConfig,
    "generate": GenerateConfig,
    "model/recurrent": RecurrentConfig,
    "model/transformer": TransformerConfig,
    "optimizer/sgd": SGDConfig,
    "optimizer/adam": AdamConfig,
    "optimizer/adamw": AdamWConfig,
    "optimizer/adadelta": AdadeltaConfig,
    "optimizer/rmsprop": RMSpropConfig,
    "scheduler/constant": SchedulerConfig,
    "scheduler/cosine": CosineConfig,
    "scheduler/linear": LinearConfig,
    "scheduler/step": StepConfig,
    "scheduler/exponential": ExponentialConfig,
    "data/arith": ArithConfig,
    "data/chain": ChainConfig,
    "data/listops": ListOpsConfig,
    "data/logic": LogicConfig,
    "data/kinship": KinshipConfig,
    "data/files": FilesConfig,
    "device/device": DeviceConfig,
}


def register(command: str | None = None) -> None:
    """Store the schemas under schema/<path>; conf/ files extend them with `defaults`. Given a
    command, only its own top-level schema is stored (each costs start-up time), with every group's."""
    cs = ConfigStore.instance()
    for path, node in SCHEMAS.items():
        group, _, name = path.rpartition("/")
        if command is None or group or name == command:
            cs.store(group=f"schema/{group}".rstrip("/"), name=name, node=node)


def to_object(cfg) -> Validated:
    """The composed DictConfig as validated dataclasses (raises ConfigError)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    try:
        obj = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as err:
        raise UserError(f"{err.full_key} is required: give it as {err.full_key}=...") from None
    assert is_dataclass(obj)
    obj.validate()
    return obj
