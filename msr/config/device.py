"""device/: where the model runs."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from msr.config.base import Validated


class DeviceType(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


@dataclass
class DeviceConfig(Validated):
    type: DeviceType = DeviceType.auto
