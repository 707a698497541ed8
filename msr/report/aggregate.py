"""Groups of runs and their statistics: runs that differ only in their replicate keys (the seed,
the fold) are one group, and each metric is its mean and sample standard deviation over them.

The keys that define the groups are the config keys whose values differ across the runs. A key
that only some runs have (model.hidden_size beside a Transformer's model.d_model) is kept only
when it tells groups apart that the other keys do not: model.name already does.
"""

from __future__ import annotations

import difflib
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from msr.errors import UserError
from msr.report.collect import Run
from msr.sweeps import objective_direction

MISSING = "<missing>"  # a key this run's config lacks; hashable, so it can be part of a group's key


@dataclass
class Group:
    values: dict[str, Any]  # the grouping keys this group has, with their values
    runs: list[Run]  # completed runs only

    @property
    def label(self) -> str:
        return " ".join(f"{key}={value}" for key, value in self.values.items()) or "all runs"

    def metric_values(self, metric: str) -> list[float]:
        return [v for v in (run.value(metric) for run in self.runs) if v is not None]

    def stats(self, metric: str) -> tuple[float | None, float | None]:
        return mean_std(self.metric_values(metric))


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof 1); the std is None for fewer than two values."""
    if not values:
        return None, None
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def known_keys(runs: list[Run]) -> list[str]:
    """Every config key of the runs, in the order their configs list them."""
    return list(dict.fromkeys(key for run in runs for key in run.config))


def resolve_key(key: str, runs: list[Run], option: str) -> str:
    """A config key the runs have; a group's name (`model`) stands for its option's `model.name`."""
    known = known_keys(runs)
    if key in known:
        return key
    if f"{key}.name" in known:
        return f"{key}.name"
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    hint = f"close ones: {', '.join(close)}" if close else f"keys there: {', '.join(known[:8])}, ..."
    raise UserError(f"{option} {key}: no run has that config key; {hint}")


def apply_filters(runs: list[Run], filters: list[str]) -> list[Run]:
    for condition in filters:
        key, sep, wanted = condition.partition("=")
        if not sep or not key:
            raise UserError(f"--filter {condition}: give key=value, e.g. --filter model.name=lstm")
        key = resolve_key(key, runs, "--filter")
        kept = [run for run in runs if matches(run.config.get(key, MISSING), wanted)]
        if not kept:
            seen = sorted({str(run.config.get(key, MISSING)) for run in runs})
            raise UserError(f"--filter {condition} matches no run; {key} is one of: {', '.join(seen)}")
        runs = kept
    return runs


def matches(actual: Any, wanted: str) -> bool:
    """Whether a config value equals the text of a --filter (1e-3 equals 0.001, true equals True)."""
    if isinstance(actual, bool) or actual is None:
        return wanted.lower() == str(actual).lower() or (actual is None and wanted == "null")
    if isinstance(actual, (int, float)):
        try:
            return float(wanted) == float(actual)
        except ValueError:
            return False
    return str(actual) == wanted


def varying_keys(runs: list[Run], replicates: list[str]) -> list[str]:
    keys = [k for k in known_keys(runs) if k not in replicates]
    varying = [k for k in keys if len({run.config.get(k, MISSING) for run in runs}) > 1]
    # A key that only follows the others (model.tie_embeddings with model=lstm,transformer; a size
    # only one model option has) tells no group apart: later keys go first, so model.name stays.
    for key in reversed(list(varying)):
        rest = [k for k in varying if k != key]
        if partitions(runs, rest) == partitions(runs, varying):
            varying = rest
    return varying


def partitions(runs: list[Run], keys: list[str]) -> int:
    return len({tuple(run.config.get(k, MISSING) for k in keys) for run in runs})


def replicate_id(run: Run, replicates: list[str]) -> tuple:
    """The run's values of the replicate keys (the seed also from metrics.json, where a config lacks it)."""
    return tuple(run.config.get(k, run.record.get(k, MISSING)) for k in replicates)


def repeated_replicates(groups: list[Group], replicates: list[str]) -> list[str]:
    """A line for each group that holds two runs of the same seed (the same run evaluated twice?):
    they are averaged in as if independent, which a reader should know."""
    notes = []
    for group in groups:
        counts = Counter(replicate_id(run, replicates) for run in group.runs)
        repeated = [", ".join(f"{k}={v}" for k, v in zip(replicates, rep) if v != MISSING)
                    for rep, n in counts.items() if n > 1]
        if repeated:
            notes.append(f"{group.label}: several runs share {'; '.join(repeated)}; all are averaged in")
    return notes


def make_groups(runs: list[Run], keys: list[str]) -> list[Group]:
    """The completed runs, grouped by their values of `keys` (in the order groups first appear)."""
    groups: dict[tuple, Group] = {}
    for run in runs:
        if run.completed:
            values = tuple(run.config.get(k, MISSING) for k in keys)
            if values not in groups:
                groups[values] = Group({k: v for k, v in zip(keys, values) if v != MISSING}, [])
            groups[values].runs.append(run)
    return list(groups.values())


def choose_metrics(runs: list[Run], requested: list[str]) -> list[str]:
    """The --metric names (each reported by some completed run), or by default the objective
    and then every metric the completed runs report."""
    completed = [run for run in runs if run.completed]
    reported = list(dict.fromkeys(name for run in completed for name in run.metric_names()))
    for metric in requested:
        if completed and not any(run.value(metric) is not None for run in completed):
            raise UserError(f"--metric {metric}: no completed run reports it; metrics there: "
                            f"{', '.join(reported) or 'none'}")
    if requested:
        return list(dict.fromkeys(requested))
    objective = default_objective(completed)
    return [objective, *(m for m in reported if m != objective)] if objective else reported


def default_objective(completed: list[Run]) -> str | None:
    """The sweep's objective (sweep.objective, as most runs had it), else test/accuracy, else the
    first metric reported; the first of those some run reports."""
    declared = [name for name, _ in Counter(run.objective for run in completed if run.objective).most_common()]
    candidates = [*declared, "test/accuracy", *(name for run in completed for name in run.metric_names())]
    return next((c for c in candidates if any(run.value(c) is not None for run in completed)), None)


def direction(objective: str, runs: list[Run]) -> str:
    """sweep.direction where the runs declared this objective; else losses (and the like) minimize."""
    declared = [run.direction for run in runs if run.objective == objective and run.direction]
    if declared:
        return Counter(declared).most_common(1)[0][0]
    return objective_direction(objective, None)


def sort_groups(groups: list[Group], objective: str | None, goal: str) -> list[Group]:
    """Best first by the objective's mean; groups without it last."""
    def key(group: Group):
        mean, _ = group.stats(objective) if objective else (None, None)
        return (mean is None or math.isnan(mean), 0.0 if mean is None else (-mean if goal == "maximize" else mean))

    return sorted(groups, key=key)
