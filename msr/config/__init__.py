"""Typed config schemas, one module per conf/ group, registered with Hydra's ConfigStore.

The dataclasses here say which keys exist, of which type, and with which default: every
default lives here, once. conf/ only chooses: a group option's YAML names its schema and sets
what that option has of its own where options share a schema (model/gru.yaml: `name: gru`;
data/gsm8k.yaml: its files and fields); a command's YAML picks its group options and sets what
that command does differently with them (pretrain.yaml's shorter trainer budget, finetune.yaml's
smaller learning rate). Experiment presets are the exception: they pin each value of the recipe
they reproduce, so that a later change of a default leaves the recipe as it was.
tests/test_config_defaults.py refuses a YAML that restates a schema's default.

OmegaConf refuses keys a schema lacks while composing, and `validate()` checks the ranges a
type cannot express; both run before any work, so a bad value never costs a training run.
Nothing here imports torch: the CLI loads this package to answer --help and --cfg at once.
"""

from __future__ import annotations

from dataclasses import is_dataclass

from msr.config.augment import AugmentOptions
from msr.config.base import (Validated, check_runs, fraction, non_negative, positive, positive_ints,
                             require)
from msr.config.commands import (AugmentConfig, DataCommandConfig, EvaluateConfig, FinetuneConfig,
                                 GenerateConfig, PretrainConfig, TrainConfig)
from msr.config.data import (LISTOPS_OPERATORS, ArithConfig, ArithmeticTaskConfig, ChainConfig, DataConfig,
                             FileFormat, FilesConfig, KinshipConfig, ListOpsConfig, LogicConfig, MixtureConfig,
                             Preprocess, ScanConfig, SplitConfig, TaskConfig, TokenizerKind)
from msr.config.compress import CompressConfig, CompressOptions, Quantize
from msr.config.curriculum import CurriculumConfig, LinearCurriculumConfig, MasteryCurriculumConfig
from msr.config.decode import DecodeConfig, Strategy
from msr.config.device import DeviceConfig, DeviceType
from msr.config.finetune import FREEZE, LearningRateScale, LoraConfig, TransferConfig
from msr.config.model import Positions, RecurrentConfig, TransformerConfig
from msr.config.optimizer import (AdadeltaConfig, AdagradConfig, AdamConfig, AdamWConfig, AdjustLR, MuonConfig,
                                  OptimizerConfig, RMSpropConfig, SGDConfig)
from msr.config.paths import PathsConfig
from msr.config.scheduler import (CosineConfig, DecayConfig, ExponentialConfig, LinearConfig, SchedulerConfig,
                                  StepConfig)
from msr.config.trainer import EarlyStoppingConfig, Precision, TrainerConfig
from msr.config.sweep import SweepConfig
from msr.errors import UserError

SCHEMAS = {
    "train": TrainConfig,
    "pretrain": PretrainConfig,
    "finetune": FinetuneConfig,
    "data": DataCommandConfig,
    "augment": AugmentConfig,
    "evaluate": EvaluateConfig,
    "generate": GenerateConfig,
    "compress": CompressConfig,
    "model/recurrent": RecurrentConfig,
    "model/transformer": TransformerConfig,
    "optimizer/sgd": SGDConfig,
    "optimizer/adam": AdamConfig,
    "optimizer/adamw": AdamWConfig,
    "optimizer/adadelta": AdadeltaConfig,
    "optimizer/rmsprop": RMSpropConfig,
    "optimizer/adagrad": AdagradConfig,
    "optimizer/muon": MuonConfig,
    "curriculum/none": CurriculumConfig,
    "curriculum/linear": LinearCurriculumConfig,
    "curriculum/mastery": MasteryCurriculumConfig,
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
    "data/mixture": MixtureConfig,
    "data/files": FilesConfig,
    "data/scan": ScanConfig,
    "device/device": DeviceConfig,
}


def register(command: str | None = None) -> None:
    """Store the schemas under schema/<path>; conf/ files extend them with `defaults`. Given a
    command, only its own top-level schema is stored (each costs start-up time), with every group's."""
    from hydra.core.config_store import ConfigStore

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
