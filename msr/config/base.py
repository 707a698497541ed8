"""What every schema shares: range checks with one-line messages, and recursive validation."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from msr.errors import ConfigError


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


def check_runs(key: str, runs: Any) -> list[str]:
    """`run=RUN` or `run=[A,B,...]`: each a run folder or one of its checkpoint folders."""
    from msr.runs import is_run, listed_runs

    listed = listed_runs(runs)
    require(len(listed) > 0, key, runs, "a run folder, or a list of them for an ensemble: run=[A,B]")
    for run in listed:
        require(is_run(run), key, run, "must be an existing run folder (outputs/train/<date>/<time>)")
    return listed
