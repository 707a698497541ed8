"""Run folders: where a run's files go, written so that a crash never leaves half a file, and
how a later command finds a run, its checkpoints and the config it saved.

Every file is written to a temporary name in the same folder, flushed to disk, then renamed
over the old one (rename is atomic on POSIX), so readers see the old or the new file, whole.

`RUN`, wherever a command reads a run (run=, init=, augment.teacher=, msr reproduce), is a run
folder, outputs/<command>/<date>/<time> or a sweep's job outputs/multirun/<command>/<date>/<time>/<job>,
or one of its checkpoint folders, RUN/checkpoints/<name> (best, last); resume= takes the run folder.
Torch-free: the CLI reads runs before anything heavy loads.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from msr import distributed
from msr.errors import UserError

# Called with each record logged to history.jsonl, after it is written (see msr.sweeps.reporting_to).
HISTORY_HOOKS: list = []


def fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_mode() -> int:
    """The mode a new file gets under the current umask (mkstemp would make it 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Call `write(file)` on a temporary file beside `path`, fsync it, then rename it to `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, file_mode())
    try:
        with os.fdopen(fd, "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(data, indent=2, sort_keys=False) + "\n"))


# Finding runs and what they saved

OUTPUTS = Path("outputs")  # where run folders go unless hydra.run.dir says otherwise (conf/runs.yaml)


def is_run(path: str | Path) -> bool:
    """What run=, init= and augment.teacher= accept before any work: an existing folder (a run
    folder or a checkpoint folder). What it holds is checked where it is read."""
    return Path(path).is_dir()


def listed_runs(runs: Any) -> list[str]:
    """`run=RUN` or `run=[A,B,...]` (an ensemble), as a list."""
    return [runs] if isinstance(runs, str) else list(runs)


def is_checkpoint(path: str | Path) -> bool:
    """A checkpoint folder holds the weights; its other files are checked as they are read."""
    return (Path(path) / "model.safetensors").is_file()


def claim_folder(command: str, overrides: list[str], multirun: bool) -> list[str]:
    """A folder of this run's (or sweep's) own, made now and exclusively, as the override that puts
    it there; none when the overrides place it already. Runs started in the same second, on one
    machine or on a shared filesystem, get `<time>`, `<time>-1`, `<time>-2`, ...: mkdir succeeds
    for exactly one of them, so nothing of another run is ever written over."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    if any(o.lstrip("+").partition("=")[0] == key for o in overrides):
        return []
    day, moment = time.strftime("%Y-%m-%d"), time.strftime("%H-%M-%S")
    parent = OUTPUTS.joinpath(*(["multirun"] if multirun else []), command, day)
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(10_000):
        folder = parent / (moment if n == 0 else f"{moment}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return [f"{key}={folder}"]
    raise UserError(f"{parent} holds 10,000 runs started at {moment}; place this one with {key}=...")


def run_folder(path: str | Path) -> Path:
    """The run folder of RUN or of one of its checkpoint folders (RUN/checkpoints/NAME)."""
    path = Path(path)
    return path.parents[1] if is_checkpoint(path) and path.parent.name == "checkpoints" else path


def find_checkpoint(run: str | Path, names: tuple[str, ...] = ("best", "last")) -> Path | None:
    """RUN itself when it is a checkpoint folder, else the first of its checkpoints `names` there is."""
    path = Path(run)
    return next((c for c in (path, *(path / "checkpoints" / n for n in names)) if is_checkpoint(c)), None)


def checkpoint_dir(run: str | Path, name: str) -> Path:
    """RUN's checkpoint `name` (best | last), or RUN itself when it is a checkpoint folder."""
    found = find_checkpoint(run, (name,))
    if found is None:
        raise UserError(f"{run} has no checkpoints/{name}/model.safetensors: not a run of msr train "
                        f"(or it stopped before its first checkpoint; checkpoint=last may exist)")
    return found


def latest_checkpoint(run: str | Path) -> Path | None:
    """The checkpoint a resume goes on from: checkpoints/last, or, if a crash struck while it was
    being replaced, what stands in for it: .last.old (the one being replaced), else the newest of
    the step-NNNNNNN kept beside it (trainer.keep_last)."""
    folder = Path(run) / "checkpoints"
    candidates = [folder / "last", folder / ".last.old", *sorted(folder.glob("step-*"), reverse=True)]
    return next((c for c in candidates if is_checkpoint(c) and (c / "meta.json").is_file()), None)


def hydra_file(folder: str | Path, name: str) -> Path:
    """One of the files Hydra saved in the run's .hydra/: config.yaml, hydra.yaml, overrides.yaml."""
    path = Path(folder) / ".hydra" / name
    if not path.is_file():
        raise UserError(f"{folder} is not a run folder (it has no .hydra/{name})")
    return path


def has_saved_config(folder: str | Path, name: str = "hydra.yaml") -> bool:
    """Whether Hydra saved `name` in the run's .hydra/ (hydra.yaml: a folder of msr's that ran a job)."""
    return (Path(folder) / ".hydra" / name).is_file()


def read_record(folder: str | Path) -> dict:
    """The run's metrics.json, or {} when it has none that reads."""
    try:
        return json.loads((Path(folder) / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def saved_config(folder: str | Path):
    """The run's config as Hydra saved it (interpolations kept, so paths resolve against today's)."""
    from omegaconf import OmegaConf

    return OmegaConf.load(hydra_file(folder, "config.yaml"))


def saved_overrides(folder: str | Path) -> list[str]:
    """The overrides a run was started with, less those that only placed or resumed it."""
    import yaml

    overrides = yaml.safe_load(hydra_file(folder, "overrides.yaml").read_text()) or []
    return [o for o in overrides if not o.startswith(("resume=", "hydra."))]


def saved_hydra(folder: str | Path) -> dict:
    """Hydra's own settings as the run had them: runtime.choices, runtime.cwd, job.name, ..."""
    import yaml

    return yaml.safe_load(hydra_file(folder, "hydra.yaml").read_text())["hydra"]


def saved_choices(folder: str | Path) -> dict[str, str]:
    """The option the run took in each config group ({"data": "arith", "model": "lstm", ...})."""
    return saved_hydra(folder)["runtime"]["choices"]


def command_runs(command: str, outputs: Path = OUTPUTS) -> list[Path]:
    """The run folders of `command`, oldest first: its runs, <command>/<date>/<time>, and the jobs
    of its sweeps, multirun/<command>/<date>/<time>/<job> (job 10 after job 9)."""
    runs = [(p, p.parent.name, p.name, "") for p in outputs.glob(f"{command}/*/*")]
    runs += [(p, p.parent.parent.name, p.parent.name, p.name) for p in outputs.glob(f"multirun/{command}/*/*/*")]
    started = sorted((day, clock, len(job), job, p) for p, day, clock, job in runs if p.is_dir())
    return [p for *_, p in started]


def newest_unfinished(command: str, overrides: list[str], outputs: Path = OUTPUTS) -> Path | None:
    """The newest run (or sweep job) of `command` started with these overrides that did not
    complete and has checkpoints/ to go on from: what `resume=auto` resumes."""
    for folder in reversed(command_runs(command, outputs)):
        record = read_record(folder)
        try:
            same = saved_overrides(folder) == overrides
        except (OSError, ValueError, UserError):
            continue
        if record and record.get("status") != "completed" and same and (folder / "checkpoints").is_dir():
            return folder
    return None


def read_resumes(folder: Path) -> list[dict]:
    """Each time the run was resumed: the step it went on from and the overrides it added."""
    path = Path(folder) / "resumes.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


class RunDir:
    """One run's folder: history.jsonl, metrics.json, resumes.jsonl and checkpoints/. In a
    data-parallel run only rank 0 writes them (`writes`); the other workers compute the same."""

    def __init__(self, path: str | Path, command: str, command_line: str, empty_summary: dict | None = None):
        self.path = Path(path)
        self.empty_summary = empty_summary or {}
        self.progress: dict = {}  # what the run has reached so far: a run that stops early still reports it
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoints = self.path / "checkpoints"
        self.command, self.command_line = command, command_line
        self.started = time.perf_counter()
        self.writes = distributed.is_main()

    def begin(self, resume: bool = False) -> None:
        if (self.path / "metrics.json").exists() and not resume and self.writes:
            raise UserError(f"{self.path} already holds a run; give this one its own folder (hydra.run.dir=...)")
        self.write_metrics({"command": self.command, "status": "running", "command_line": self.command_line})

    def end(self, status: str, reason: str | None = None, **summary: Any) -> dict:
        """Write the final metrics.json: status (completed | failed | interrupted | pruned) and summary."""
        record = {"command": self.command, "status": status, "command_line": self.command_line}
        if reason:
            record["reason"] = reason
        record.update(self.empty_summary)  # what a run that stopped early could not measure
        record.update(self.progress)
        record.update(summary)
        record["wall_seconds"] = round(time.perf_counter() - self.started, 3)
        record["versions"] = versions()
        self.write_metrics(record)
        return record

    def record_resume(self, step: int, overrides: list[str]) -> None:
        """Append this resume to resumes.jsonl (whole file rewritten atomically): `msr reproduce`
        replays the run segment by segment from it."""
        if not self.writes:
            return
        lines = [json.dumps(r) + "\n" for r in read_resumes(self.path)]
        lines.append(json.dumps({"step": step, "overrides": overrides, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
        atomic_write(self.path / "resumes.jsonl", lambda f: f.writelines(lines))

    def log_history(self, record: dict) -> None:
        # Appended a line at a time and closed at once, so a reader always sees the records so far.
        if not self.writes:
            return
        with open(self.path / "history.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        for hook in HISTORY_HOOKS:  # an Optuna trial's pruning (msr.sweeps.reporting_to); may raise Pruned
            hook(record)

    def truncate_history(self, step: int) -> None:
        """Keep the history up to `step`: a resumed run logs what came after it again."""
        path = self.path / "history.jsonl"
        if path.exists() and self.writes:
            kept = [line for line in path.read_text().splitlines(keepends=True) if _step_of(line) <= step]
            atomic_write(path, lambda f: f.writelines(kept))

    def write_metrics(self, summary: dict) -> None:
        if self.writes:
            write_json(self.path / "metrics.json", summary)


def _step_of(line: str) -> float:
    """A history line's step; a line cut short by a kill counts as after every step."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError):
        return float("inf")


def versions() -> dict:
    """What a rerun needs to know about the software: versions, and the git commit (with a dirty
    flag) when msr runs from a checkout."""
    import platform

    import datasets
    import torch

    from msr import __version__

    found = {"python": platform.python_version(), "torch": torch.__version__, "datasets": datasets.__version__,
             "msr": __version__}
    return {**found, **git_revision()}


@functools.lru_cache(maxsize=None)
def git_revision() -> dict:
    import subprocess

    checkout = Path(__file__).resolve().parents[1]
    if not (checkout / ".git").exists():
        return {}
    try:
        commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": bool(status.strip())}
