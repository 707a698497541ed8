"""logger: what a training run records beside history.jsonl and metrics.json."""

from __future__ import annotations

from dataclasses import dataclass

from msr.config.base import Validated


@dataclass
class LoggerConfig(Validated):
    # TensorBoard event files in the run folder (`tensorboard --logdir outputs` lists each run);
    # history.jsonl and curves.png are written either way
    tensorboard: bool = True
