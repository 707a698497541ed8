"""Finding the runs a report covers and reading what each saved: metrics.json and its config.

A PATH is a run folder (it holds metrics.json, or at least the config Hydra saved), a sweep
folder or any folder above runs (every run below it counts), or a glob of those. The config is read with the C YAML loader, not
OmegaConf: a report reads a hundred of them and resolves nothing.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from msr.errors import UserError
from msr.reproduce import flatten
from msr.runs import OUTPUTS
from msr.sweeps import read_manifest

# Keys that place, resume or seed a run from another folder, or steer the sweep around it:
# they never tell two experiments apart.
BOOKKEEPING = ("resume", "run", "init")
BOOKKEEPING_PREFIXES = ("paths.", "hydra.", "sweep.")
SKIPPED_FOLDERS = {"checkpoints", "data"}  # below a run, never other runs
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Run:
    folder: Path
    record: dict  # metrics.json
    config: dict[str, Any]  # flat dotted keys that describe the experiment, plus "command"
    objective: str | None = None  # the sweep.objective the run was started with
    direction: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.record.get("status") or "unknown"

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def value(self, metric: str) -> float | None:
        """A metric of metrics.json's `metrics`, or a number at its top level (tokens_per_second)."""
        found = (self.record.get("metrics") or {}).get(metric, self.record.get(metric))
        return float(found) if isinstance(found, (int, float)) and not isinstance(found, bool) else None

    def metric_names(self) -> list[str]:
        return list(self.record.get("metrics") or {})


def collect(paths: list[str], replicates: list[str]) -> tuple[list[Run], Path | None]:
    """The runs under `paths` (default: the newest sweep) and the sweep folder when exactly one
    sweep was named (where the report goes by default)."""
    if not paths:
        paths = [str(newest_sweep())]
    folders, sweeps = [], []
    for pattern in paths:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        found = [run for match in matches for run in runs_below(Path(match))]
        if not found:
            what = ("matches nothing" if not matches else "does not exist" if not Path(matches[0]).exists()
                    else "holds no run (no metrics.json)")
            raise UserError(f"{pattern} {what}; give run folders or sweep folders "
                            "(outputs/multirun/<command>/<date>/<time>)")
        folders += found
        sweeps += [Path(m) for m in matches if is_sweep(Path(m))]
    unique = {}  # a run named twice (a sweep and one of its jobs) is read once, where first named
    for folder in folders:
        unique.setdefault(os.path.realpath(folder), folder)
    runs = [read_run(folder, replicates) for folder in unique.values()]
    return runs, sweeps[0] if len(paths) == 1 and len(sweeps) == 1 else None


def newest_sweep(outputs: Path = OUTPUTS) -> Path:
    sweeps = [p for p in outputs.glob("multirun/*/*/*") if p.is_dir()]
    if not sweeps:
        raise UserError(f"no sweep under {outputs}/multirun/ here; name the runs: msr report PATH... "
                        "(run folders, sweep folders or globs)")
    return max(sweeps, key=lambda p: (p.parent.name, p.name, p.stat().st_mtime))


def is_sweep(path: Path) -> bool:
    return (path / "sweep.jsonl").is_file() or (path / "multirun.yaml").is_file()


def runs_below(path: Path, depth: int = 6) -> list[Path]:
    """`path` itself when it is a run, else the runs below it (a sweep's jobs in job order). A
    folder where Hydra saved a config is a run even without metrics.json: a job that failed
    before it began, which the report lists."""
    if (path / "metrics.json").is_file() or (path / ".hydra" / "config.yaml").is_file():
        return [path]
    if depth == 0 or not path.is_dir():
        return []
    children = [p for p in path.iterdir()
                if p.is_dir() and not p.name.startswith(".") and p.name not in SKIPPED_FOLDERS]
    children.sort(key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    return [run for child in children for run in runs_below(child, depth - 1)]


def read_run(folder: Path, replicates: list[str]) -> Run:
    try:
        record = json.loads((folder / "metrics.json").read_text())
    except FileNotFoundError:
        record = manifest_record(folder)
    except (OSError, ValueError) as err:
        record = {"status": "unreadable", "reason": f"metrics.json does not read: {err}"}
    raw = read_config(folder)
    run = Run(folder, record, experiment_keys(raw), raw.get("sweep.objective"), raw.get("sweep.direction"))
    if record.get("command") == "evaluate" and record.get("source_runs"):
        inherit_source(run, Path(record["source_runs"][0]), replicates)
    run.config["command"] = record.get("command")
    return run


def manifest_record(folder: Path) -> dict:
    """What the sweep's manifest says of a job that left no metrics.json."""
    try:
        jobs = read_manifest(folder.parent)
    except (OSError, ValueError, KeyError):
        jobs = []
    found = next((job for job in jobs if str(job.get("job")) == folder.name), None)
    if found is None:
        return {"status": "unknown", "reason": "no metrics.json (never started, or its files were removed)"}
    return {"status": found.get("status") or "unknown", "reason": found.get("reason")}


def read_config(folder: Path) -> dict[str, Any]:
    """The run's .hydra/config.yaml as flat dotted keys ({} when it has none that reads)."""
    try:
        tree = yaml.load((folder / ".hydra" / "config.yaml").read_text(), Loader=Loader)
    except (OSError, yaml.YAMLError):
        return {}
    return flatten(tree) if isinstance(tree, dict) else {}


def experiment_keys(flat: dict[str, Any]) -> dict[str, Any]:
    """The keys that describe the experiment, lists as text so that every value hashes."""
    return {key: json.dumps(value) if isinstance(value, (list, dict)) else value for key, value in flat.items()
            if key not in BOOKKEEPING and not key.startswith(BOOKKEEPING_PREFIXES)}


def inherit_source(run: Run, source: Path, replicates: list[str]) -> None:
    """An evaluation describes its source run's experiment with its own keys on top, so an evaluate
    sweep over a train sweep's jobs groups like the train sweep. The replicate keys stay the
    source's: the seed that was replicated is the training seed, not the evaluation's own."""
    folder = locate_source(run.folder, source)
    base = experiment_keys(read_config(folder)) if folder is not None else {}
    if not base:
        run.notes.append(f"its source run {source} has no readable .hydra/config.yaml; grouped by its own config")
        return
    own = {key: value for key, value in run.config.items() if key not in replicates}
    run.config = {**base, **own}


def locate_source(folder: Path, source: Path) -> Path | None:
    """source_runs are written as given, relative to where `msr evaluate` ran: here, or the
    directory Hydra recorded as the evaluation's working directory."""
    if source.parent.name == "checkpoints":  # RUN/checkpoints/<name>: the run is two folders up
        source = source.parents[1]
    candidates = [source]
    if not source.is_absolute():
        try:
            hydra = yaml.load((folder / ".hydra" / "hydra.yaml").read_text(), Loader=Loader)["hydra"]
            candidates.append(Path(hydra["runtime"]["cwd"]) / source)
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            pass
    return next((c for c in candidates if (c / ".hydra" / "config.yaml").is_file()), None)
