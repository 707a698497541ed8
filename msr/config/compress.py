"""`msr compress run=RUN`: magnitude pruning, a masked fine-tune and dynamic int8 quantization.

The fine-tune's optimizer, schedule, batch and evaluations come from the usual groups and
trainer.*; its length is compress.finetune_steps (trainer.max_steps is not read here).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import MISSING

from msr.config.base import Validated, check_runs, fraction, non_negative, require
from msr.config.curriculum import CurriculumConfig
from msr.config.device import DeviceConfig
from msr.config.logger import LoggerConfig
from msr.config.paths import PathsConfig
from msr.config.sweep import SweepConfig
from msr.config.trainer import TrainerConfig


# global: one magnitude threshold over every weight matrix (a small layer may lose more);
# layer: each weight matrix loses the same fraction; units: whole hidden units of each recurrent
# layer, whole heads of each attention block (the weakest by the L2 norm of their weights)
PRUNE_SCOPES = ("global", "layer", "units")


class Quantize(str, Enum):
    none = "none"
    int8 = "int8"  # torch.ao dynamic int8: Linear, LSTM and GRU weights, per output channel (CPU)


@dataclass
class CompressOptions(Validated):
    prune: float = 0.0  # fraction of the weight matrices' entries set to zero, smallest |w| first
    prune_scope: str = "global"  # global | layer | units
    finetune_steps: int = 0  # training steps after pruning, the zeros held by the mask
    quantize: Quantize = Quantize.none

    def check(self, p: str) -> None:
        fraction(p + "prune", self.prune)
        require(self.prune_scope in PRUNE_SCOPES, p + "prune_scope", self.prune_scope, "one of global, layer, units")
        non_negative(p + "finetune_steps", self.finetune_steps)
        require(not self.finetune_steps or self.prune > 0, p + "finetune_steps", self.finetune_steps,
                "recovers the accuracy pruning costs, with the zeros kept: give compress.prune too")
        require(self.prune > 0 or self.quantize != Quantize.none, p + "prune", self.prune,
                "with compress.quantize=none there is nothing to do: give compress.prune=0.5 and/or "
                "compress.quantize=int8")


@dataclass
class CompressConfig(Validated):
    """`msr compress run=RUN`: a smaller copy of RUN's model in a new run folder."""

    run: Any = MISSING  # the run folder (or one of its checkpoint folders) to compress
    checkpoint: str = "best"  # best | last
    seed: int = 0
    compress: CompressOptions = field(default_factory=CompressOptions)
    data: Any = MISSING  # the run's own data (msr fills it in from the run): the fine-tune and the test split
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    curriculum: Any = field(default_factory=CurriculumConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)  # for the fine-tune; scoring and timing are on CPU
    paths: PathsConfig = field(default_factory=PathsConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    sweep: SweepConfig = field(default_factory=lambda: SweepConfig(objective="test/accuracy"))

    def check(self, p: str) -> None:
        from msr.runs import find_checkpoint

        runs = check_runs("run", self.run)
        require(len(runs) == 1, "run", self.run, "compress takes one run folder, not a list")
        require(self.checkpoint in ("best", "last"), "checkpoint", self.checkpoint, "one of best, last")
        source = find_checkpoint(runs[0], (self.checkpoint,))
        require(source is not None, "run", runs[0], f"has no checkpoints/{self.checkpoint}/model.safetensors: "
                f"compress a run that saved a checkpoint (msr train, finetune), or try checkpoint=last")
        meta = read_meta(source)
        quantized = meta.get("quantized", {}).get("layers")
        require(not quantized, "run", runs[0],
                f"is already int8 (layers {', '.join(quantized or [])}): torch.ao prunes and quantizes float "
                f"weights only; compress the float run it came from ({meta.get('compressed', {}).get('source')})")
        require(meta.get("objective") != "lm", "run", runs[0], "is a language model (msr pretrain): compress "
                "scores a task's test split; fine-tune it first (msr finetune init=RUN)")
        steps, warmup = self.compress.finetune_steps, self.scheduler.warmup_steps
        require(not steps or warmup < steps, "scheduler.warmup_steps", warmup,
                f"must be < compress.finetune_steps={steps}, the fine-tune's length")
        train_size = getattr(getattr(self.data, "train", None), "size", None)
        require(not steps or train_size is None or self.trainer.batch_size <= train_size, "trainer.batch_size",
                self.trainer.batch_size, f"must be at most data.train.size={train_size}")


def read_meta(checkpoint) -> dict:
    """A checkpoint's meta.json, read without torch (an unreadable one is reported where it is loaded)."""
    try:
        return json.loads((checkpoint / "meta.json").read_text())
    except (OSError, ValueError):
        return {}
