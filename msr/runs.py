"""The run folder: where a run's files go, written so that a crash never leaves half a file.

Every file is written to a temporary name in the same folder, flushed to disk, then renamed
over the old one (rename is atomic on POSIX), so readers see the old or the new file, whole.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from msr.errors import UserError


@functools.lru_cache(maxsize=None)
def console():
    """The one rich console on stderr, shared by log lines and the progress bar so they interleave."""
    from rich.console import Console

    return Console(stderr=True)


def console_handler(format: str, datefmt: str) -> logging.Handler:
    """Hydra's job_logging calls this: rich log lines on a terminal, plain lines otherwise."""
    if sys.stderr.isatty():
        from datetime import datetime

        from rich.logging import RichHandler
        from rich.text import Text

        from msr.train.progress import HideWhileBarShows

        class UnwrappedRichHandler(RichHandler):
            """Rich's look, one line per message: its table would fold a long line (a run folder's
            path) at the terminal's width, and a path copied from two lines is broken."""

            def emit(self, record: logging.LogRecord) -> None:
                time = datetime.fromtimestamp(record.created).strftime(f"[{datefmt}]")
                line = Text.assemble((time, "log.time"), " ", self.get_level_text(record), " ",
                                     self.render_message(record, self.format(record)))
                try:
                    self.console.print(line, soft_wrap=True)  # the terminal wraps it, for show only
                except Exception:
                    self.handleError(record)

        handler = UnwrappedRichHandler(console=console(), show_path=False, markup=False)
        handler.addFilter(HideWhileBarShows())
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(format, datefmt))
    # records meant for msr.log alone (an error line that stderr shows in its own words)
    handler.addFilter(lambda record: not getattr(record, "file_only", False))
    return handler


def interactive() -> bool:
    """A live progress bar only for a single run on a terminal; sweeps and pipes get log lines."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    return sys.stderr.isatty() and not multirun


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


def run_folder(path: str | Path) -> Path:
    """The run folder of RUN or of one of its checkpoint folders (RUN/checkpoints/NAME)."""
    path = Path(path)
    return path.parents[1] if (path / "meta.json").is_file() and path.parent.name == "checkpoints" else path


def saved_overrides(folder: Path) -> list[str]:
    """The overrides a run was started with, less those that only placed or resumed it."""
    import yaml

    path = Path(folder) / ".hydra" / "overrides.yaml"
    if not path.is_file():
        raise UserError(f"{folder} is not a run folder (it has no .hydra/overrides.yaml)")
    return [o for o in yaml.safe_load(path.read_text()) or [] if not o.startswith(("resume=", "hydra."))]


def read_resumes(folder: Path) -> list[dict]:
    """Each time the run was resumed: the step it went on from and the overrides it added."""
    path = Path(folder) / "resumes.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


class RunDir:
    """One run's folder: history.jsonl, metrics.json, resumes.jsonl and checkpoints/."""

    def __init__(self, path: str | Path, command: str, command_line: str, empty_summary: dict | None = None):
        self.path = Path(path)
        self.empty_summary = empty_summary or {}
        self.progress: dict = {}  # what the run has reached so far: a run that stops early still reports it
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoints = self.path / "checkpoints"
        self.command, self.command_line = command, command_line
        self._t0 = time.perf_counter()

    def begin(self, resume: bool = False) -> None:
        if (self.path / "metrics.json").exists() and not resume:
            raise UserError(f"{self.path} already holds a run; give this one its own folder (hydra.run.dir=...)")
        self.write_metrics({"command": self.command, "status": "running", "command_line": self.command_line})

    def end(self, status: str, reason: str | None = None, **summary: Any) -> dict:
        """Write the final metrics.json: status (completed | failed | interrupted) and summary."""
        record = {"command": self.command, "status": status, "command_line": self.command_line}
        if reason:
            record["reason"] = reason
        record.update(self.empty_summary)  # what a run that stopped early could not measure
        record.update(self.progress)
        record.update(summary)
        record["wall_seconds"] = round(time.perf_counter() - self._t0, 3)
        record["versions"] = versions()
        self.write_metrics(record)
        return record

    def record_resume(self, step: int, overrides: list[str]) -> None:
        """Append this resume to resumes.jsonl (whole file rewritten atomically): `msr reproduce`
        replays the run segment by segment from it."""
        lines = [json.dumps(r) + "\n" for r in read_resumes(self.path)]
        lines.append(json.dumps({"step": step, "overrides": overrides, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
        atomic_write(self.path / "resumes.jsonl", lambda f: f.writelines(lines))

    def log_history(self, record: dict) -> None:
        # Appended a line at a time and closed at once, so a reader always sees the records so far.
        with open(self.path / "history.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_history(self, step: int) -> None:
        """Keep the history up to `step`: a resumed run logs what came after it again."""
        path = self.path / "history.jsonl"
        if path.exists():
            kept = [line for line in path.read_text().splitlines(keepends=True) if _step_of(line) <= step]
            atomic_write(path, lambda f: f.writelines(kept))

    def write_metrics(self, summary: dict) -> None:
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
