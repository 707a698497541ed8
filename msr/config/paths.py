"""paths: where the real data sets and the caches live, from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from msr.config.base import Validated


@dataclass
class PathsConfig(Validated):
    data: str = "${oc.env:MSR_DATA,data}"  # root of the real data sets that data/*.yaml read
    cache: str = "${oc.env:MSR_CACHE,'~/.cache/msr'}"  # generated tasks and datasets' own cache
