"""Each command's top-level schema: conf/<command>.yaml composes its groups onto it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from msr.config.augment import AugmentOptions
from msr.config.base import Validated, check_runs, non_negative, require
from msr.config.curriculum import CurriculumConfig
from msr.config.data import TaskConfig
from msr.config.decode import DecodeConfig
from msr.config.device import DeviceConfig
from msr.config.distill import DistillConfig
from msr.config.distributed import DistributedConfig
from msr.config.finetune import TransferConfig
from msr.config.logger import LoggerConfig
from msr.config.model import TransformerConfig
from msr.config.paths import PathsConfig
from msr.config.pretrain import PretrainOptions
from msr.config.sweep import SweepConfig
from msr.config.trainer import TrainerConfig
from msr.config.tto import TTOConfig, TTOMethod, check_adaptable


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
    sweep: SweepConfig = field(default_factory=SweepConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    curriculum: Any = field(default_factory=CurriculumConfig)  # none | linear | mastery: conf/curriculum/
    resume: str = ""  # a run folder to continue from its checkpoints/last, or auto
    distill: DistillConfig = field(default_factory=DistillConfig)  # teacher= a run: its soft targets

    def check(self, p: str) -> None:
        if isinstance(self.data, TaskConfig):
            train_size = self.data.train.size
            require(self.trainer.batch_size <= train_size, "trainer.batch_size", self.trainer.batch_size,
                    f"must be at most data.train.size={train_size}")
            most = self.data.train.max_steps
            require(self.curriculum.name == "none" or self.curriculum.start <= most, "curriculum.start",
                    self.curriculum.start, f"must be <= data.train.max_steps={most}, the training split's most steps")
        workers = self.distributed.workers
        self.trainer.adversarial.check_against(self.data, workers)
        self.distill.check_teacher(self.data, type(self).__name__.removesuffix("Config").lower())
        require(self.trainer.batch_size % workers == 0, "trainer.batch_size", self.trainer.batch_size,
                f"is the global batch of a step, shared by {workers} workers: give a multiple of {workers}")
        warmup, steps = self.scheduler.warmup_steps, self.trainer.max_steps
        require(warmup < steps, "scheduler.warmup_steps", warmup,
                f"must be < trainer.max_steps={steps}: the warmup would take the whole run and the "
                f"schedule never start; lower scheduler.warmup_steps or raise trainer.max_steps")


@dataclass
class PretrainConfig(TrainConfig):
    """`msr pretrain`: language modelling on a corpus (or a task's inputs): next-token, or masked."""

    sweep: SweepConfig = field(default_factory=lambda: SweepConfig(objective="val/loss", direction="minimize"))
    pretrain: PretrainOptions = field(default_factory=PretrainOptions)  # objective: causal | masked

    def check(self, p: str) -> None:
        super().check(p)
        monitor = self.trainer.early_stopping.monitor
        require(monitor == "val/loss", "trainer.early_stopping.monitor", monitor,
                "must be val/loss for a language model (no block of text is ever exactly right)")
        require(self.curriculum.name == "none", "curriculum", self.curriculum.name,
                "must be none for msr pretrain: a curriculum orders a task's examples by their steps")
        adversarial = self.trainer.adversarial
        require(not adversarial.refresh_every and not adversarial.robust_test, "trainer.adversarial.refresh_every",
                adversarial.refresh_every, "must be 0 for msr pretrain (and robust_test false): the search looks "
                "for rewrites that change a model's answer, and a language model answers nothing")
        if self.pretrain.objective == "masked":
            require(isinstance(self.model, TransformerConfig), "pretrain.objective", "masked",
                    f"needs model=transformer: model={self.model.name} reads left to right and cannot attend both ways")
            require(self.model.positions != "none",
                    "model.positions", "none", "cannot tell order without a causal mask: with "
                    "pretrain.objective=masked choose learned, sinusoidal, rope or alibi")


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
    sweep: SweepConfig = field(default_factory=lambda: SweepConfig(objective="test/accuracy"))
    tto: TTOConfig = field(default_factory=TTOConfig)  # test-time optimisation: tto.method=dynamic

    def check(self, p: str) -> None:
        runs = check_runs("run", self.run)
        require(self.checkpoint in ("best", "last"), "checkpoint", self.checkpoint, "one of best, last")
        require(self.split in ("train", "val", "test"), "split", self.split, "one of train, val, test")
        non_negative("limit", self.limit)
        if self.tto.method != TTOMethod.none:
            check_adaptable(runs, self.checkpoint)


@dataclass
class GenerateConfig(Validated):
    """`msr generate run=RUN prompt=...`: continue prompts with a run's checkpoint."""

    run: Any = MISSING
    checkpoint: str = "best"
    prompt: str = ""
    prompts_file: str = ""  # one prompt per line
    seed: int = 0
    decode: DecodeConfig = field(default_factory=DecodeConfig)
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
